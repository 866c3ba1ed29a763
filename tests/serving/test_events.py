"""The endpoint's per-event checks give the reasons ``classify`` (validate, the
stream) gives the same rows: the Spark rules are the expected values."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehound.config import Config
from lakehound.serving.events import check
from lakehound.validation.reader import MALFORMED, RAW, SOURCE
from lakehound.validation.rules import REASONS, classify
from schemas.registry import get_contract

GOOD = {
    "transaction_id": "t1", "account_id": "acct-1", "merchant_id": "m-1",
    "merchant_category": "grocery", "amount": "12.5", "currency": "EUR", "country": "DE",
    "channel": "pos", "event_ts": "2024-01-02T10:00:00",
}  # fmt: skip
VARIANTS: list[dict[str, str | None]] = [
    {},
    {"amount": "0"},
    {"amount": "-1e3"},
    {"amount": "2000000"},
    {"amount": "NaN"},
    {"amount": "Infinity"},
    {"amount": "12,5"},
    {"amount": "1_000"},
    {"amount": " 7.25 "},
    {"amount": None, "account_id": ""},
    {"account_id": "   ", "currency": "XXX", "country": "de"},
    {"merchant_category": "", "channel": None},
    {"merchant_category": "toys"},
    {"transaction_id": "x" * 65},
    {"transaction_id": None},
    {"event_ts": "2024-01-02 10:00:00+02:00"},
    {"event_ts": "2024-01-02T10:00:00Z"},
    {"event_ts": "1999-12-31T23:59:59"},
    {"event_ts": "2031-01-01T00:00:00"},
    {"event_ts": "yesterday"},
    {"event_ts": "2024-13-01T00:00:00"},
    {"event_ts": ""},
]


@pytest.mark.slow
def test_reasons_equal_the_spark_rules(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg("transactions")
    contract = get_contract(cfg.validation.contract)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [{**GOOD, **v, "transaction_id": (v.get("transaction_id", f"t{i}"))}
            for i, v in enumerate(VARIANTS)]  # fmt: skip
    schema = ", ".join(f"`{c}` string" for c in contract.column_names)
    df = spark.createDataFrame([[r[c] for c in contract.column_names] for r in rows], schema)
    raw = df.select(
        "*",
        F.monotonically_increasing_id().cast("string").alias(RAW),
        F.lit(False).alias(MALFORMED),
        F.lit("req").alias(SOURCE),
    )
    # Every row has its own key: the duplicate rule is checked below.
    out = classify(raw, contract, cfg.validation, run_date=None, fallback_date=now.date(), now=now)
    spark_reasons = {r[RAW]: list(r[REASONS]) for r in out.select("raw_record", REASONS)
                     .withColumnRenamed("raw_record", RAW).collect()}  # fmt: skip
    ordered = [spark_reasons[k] for k in sorted(spark_reasons, key=int)]
    assert any(ordered) and not ordered[0]
    for row, want in zip(rows, ordered, strict=True):
        got = check(row, "raw", contract, cfg.validation, now)
        assert got.reasons == want, row
        if want == []:
            assert got.values["amount"] is not None and got.values["event_ts"] is not None


def test_malformed_bad_encoding_and_duplicate(make_cfg: Callable[..., Config]) -> None:
    cfg = make_cfg("transactions")
    contract = get_contract(cfg.validation.contract)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert check(None, "{oops", contract, cfg.validation, now).reasons[0] == "malformed_record"
    enc = check({**GOOD}, "acct-\ufffd", contract, cfg.validation, now)
    assert enc.reasons == ["bad_encoding"]
    assert check(GOOD, "r", contract, cfg.validation, now, seen={"t1"}).reasons == ["duplicate"]
    ok = check(GOOD, "r", contract, cfg.validation, now)
    assert ok.ok and ok.values["event_ts"] == dt.datetime(2024, 1, 2, 10)
    assert ok.values["amount"] == 12.5
