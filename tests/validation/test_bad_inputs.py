"""The bad-input corpus: each kind of dirty file with its expected outcome.

Every case writes one small raw partition (10 good rows plus the bad part unless the
case says otherwise), runs the real validation (Spark, Delta, GX) for that date and
checks the validated / quarantined counts, the quarantine reasons and the count
reconciliation against hand-counted expectations, or the exit-code error and the
name in its message.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehound import io
from lakehound.errors import ContractViolation, InputError, LakeHoundError
from lakehound.validation import validate
from lakehound.validation.reader import read_raw
from lakehound.validation.rules import RAW_RECORD, REASONS, classify
from lakehound.validation.runner import drift_outcome, invalid_fraction_outcome, resolve_contract
from tests.validation.conftest import HEADER, ctx, good_lines, tx_config, tx_line

DAY = "2024-01-02"
GOOD = good_lines(10)


@dataclass(frozen=True)
class Case:
    name: str
    content: bytes
    validated: int = 0
    quarantined: int = 0
    # reason -> count expected in the quarantine
    reasons: dict[str, int] = field(default_factory=dict)
    error: type[LakeHoundError] | None = None
    message: str = ""
    overrides: tuple[str, ...] = ()
    file_name: str = "part-0.csv"


def _csv(lines: list[str], header: str = HEADER, eol: str = "\n") -> bytes:
    return (eol.join([header, *lines]) + eol).encode("utf-8")


def _with(*bad: str) -> bytes:
    return _csv([*GOOD, *bad])


BAD_MERCHANT = tx_line(50).replace("m0", "m\xe9")
CASES = [
    Case("empty_file", b""),
    Case("header_only", _csv([])),
    Case("utf8_bom", b"\xef\xbb\xbf" + _csv(GOOD), validated=10),
    Case("crlf_line_endings", _csv(GOOD, eol="\r\n"), validated=10),
    Case("blank_lines_inside", _csv([*GOOD[:5], "", *GOOD[5:]]), validated=10),
    Case(
        "reordered_columns",
        _csv(
            [",".join(reversed(line.split(","))) for line in GOOD],
            header=",".join(reversed(HEADER.split(","))),
        ),
        validated=10,
    ),
    Case("gzip_file", gzip.compress(_csv(GOOD)), validated=10, file_name="part-0.csv.gz"),
    Case(
        "wrong_delimiter",
        _csv([x.replace(",", ";") for x in GOOD], header=HEADER.replace(",", ";")),
        error=ContractViolation,
        message="schema_drift",
    ),
    Case("truncated_last_line", _with("t09999,a1,m1,groc"), 10, 1, {"malformed_record": 1}),
    Case("too_many_tokens", _with(tx_line(51) + ",surplus"), 10, 1, {"malformed_record": 1}),
    Case(
        "non_utf8_bytes",
        _csv(GOOD) + BAD_MERCHANT.encode("latin-1") + b"\n",
        10,
        1,
        {"bad_encoding": 1},
    ),
    Case("nan_amount", _with(tx_line(52, amount="NaN")), 10, 1, {"not_finite:amount": 1}),
    Case("infinite_amount", _with(tx_line(53, amount="Infinity")), 10, 1, {"not_finite:amount": 1}),
    Case("empty_amount", _with(tx_line(54, amount="")), 10, 1, {"missing:amount": 1}),
    Case("negative_amount", _with(tx_line(55, amount="-3.00")), 10, 1, {"below_min:amount": 1}),
    Case("zero_amount", _with(tx_line(56, amount="0")), 10, 1, {"below_min:amount": 1}),
    Case("absurd_amount", _with(tx_line(57, amount="1e12")), 10, 1, {"above_max:amount": 1}),
    Case(
        "amount_not_a_number",
        _with(
            tx_line(58, amount="12,50".replace(",", "."), channel="x"), tx_line(59, amount="abc")
        ),
        10,
        2,
        {"not_in_set:channel": 1, "invalid_type:amount": 1},
    ),
    Case(
        "epoch_zero_ts",
        _with(tx_line(60, event_ts="1970-01-01T00:00:00Z")),
        10,
        1,
        {"before_floor:event_ts": 1},
    ),
    Case(
        "far_future_ts",
        _with(tx_line(61, event_ts="2999-01-01T00:00:00Z")),
        10,
        1,
        {"in_future:event_ts": 1},
    ),
    Case(
        "mixed_offsets",
        _with(
            tx_line(62, event_ts=f"{DAY}T10:00:00+02:00"),
            tx_line(63, event_ts=f"{DAY}T03:00:00-05:00"),
            tx_line(64, event_ts=f"{DAY}T23:30:00-02:00"),
        ),
        12,
        1,
        {"event_date_outside_run": 1},
    ),
    Case(
        "unparseable_ts",
        _with(tx_line(65, event_ts="yesterday")),
        10,
        1,
        {"invalid_type:event_ts": 1},
    ),
    Case(
        "duplicated_ids",
        _with(tx_line(3).replace("T00:03:00Z", "T05:00:00Z"), tx_line(4)),
        10,
        2,
        {"duplicate": 2},
    ),
    Case(
        "missing_key_column",
        _csv([x.split(",", 1)[1] for x in GOOD], header=HEADER.split(",", 1)[1]),
        error=ContractViolation,
        message="missing ['transaction_id']",
    ),
    Case(
        "extra_column",
        _csv([x + ",hello" for x in GOOD], header=HEADER + ",note"),
        error=ContractViolation,
        message="unknown ['note']",
    ),
    Case(
        "extra_column_allowed",
        _csv([x + ",hello" for x in GOOD], header=HEADER + ",note"),
        validated=10,
        overrides=("validation.allow_new_columns=true",),
    ),
    Case("quoted_comma_field", _with(tx_line(66, merchant_id='"m,66"')), validated=11),
    Case(
        "long_line",
        _with(tx_line(67, merchant_id="m" * 100_000)),
        10,
        1,
        {"too_long:merchant_id": 1},
    ),
    Case("unknown_currency", _with(tx_line(68, currency="XYZ")), 10, 1, {"not_in_set:currency": 1}),
    Case("lowercase_country", _with(tx_line(69, country="de")), 10, 1, {"not_in_set:country": 1}),
    Case("blank_required_value", _with(tx_line(70, country="  ")), 10, 1, {"missing:country": 1}),
    Case(
        "all_null_keys",
        _with(*[tx_line(80 + i, transaction_id="") for i in range(4)]),
        10,
        4,
        {"missing:transaction_id": 4},
        overrides=("validation.max_invalid_fraction=0.5",),
    ),
    Case(
        "only_bad_rows",
        _csv([tx_line(90 + i, amount="-1") for i in range(5)]),
        error=ContractViolation,
        message="invalid_fraction",
    ),
    Case(
        "too_many_invalid",
        _with(*[tx_line(100 + i, currency="???") for i in range(4)]),
        error=ContractViolation,
        message="observed 0.2857",
    ),
    Case(
        "row_from_other_date",
        _with(tx_line(110, day="2024-01-03")),
        10,
        1,
        {"event_date_outside_run": 1},
    ),
]


def _write(tmp_path: Path, case: Case) -> None:
    folder = tmp_path / "raw" / f"event_date={DAY}"
    folder.mkdir(parents=True)
    (folder / case.file_name).write_bytes(case.content)


def _check_reasons(actual: dict[str, int], case: Case) -> None:
    # Every expected reason with its exact count; a malformed row may add the
    # missing:<col> reasons of the columns it lacks, which is fine.
    assert {r: actual.get(r, 0) for r in case.reasons} == case.reasons
    if "malformed_record" not in case.reasons:
        assert actual == case.reasons


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_classification(spark: SparkSession, tmp_path: Path, case: Case) -> None:
    """Every case through the pure read + classify functions and the policy checks
    (no Delta, no GX: ~1 s a case)."""
    _write(tmp_path, case)
    cfg = tx_config(tmp_path, "validation.volume_tolerance=null", *case.overrides)
    contract = resolve_contract(cfg)
    run = ctx(DAY)
    raw = read_raw(spark, cfg.input, contract, [run.date] if run.date else None)
    classified = classify(
        raw.df,
        contract,
        cfg.validation,
        run_date=run.date,
        fallback_date=run.started_at.date(),
        now=run.started_at,
    )
    rows = classified.select(REASONS, RAW_RECORD).collect()
    bad = [r for r in rows if r[REASONS]]
    reasons: dict[str, int] = {}
    for r in bad:
        for reason in r[REASONS]:
            reasons[reason] = reasons.get(reason, 0) + 1
    checks = [drift_outcome(raw.drift, cfg), invalid_fraction_outcome(len(rows), len(bad), cfg)]
    failed = [o.describe() for o in checks if o.blocking and not o.success]
    if case.error is not None:
        assert any(case.message in f for f in failed), failed
        return
    assert failed == []
    assert (len(rows) - len(bad), len(bad)) == (case.validated, case.quarantined)
    _check_reasons(reasons, case)
    assert all(r[RAW_RECORD] for r in bad), "raw text kept for every bad row"


# The full job (Delta writes, GX, validation_runs) for a representative subset: ~10 s each.
FULL = (
    "utf8_bom",
    "truncated_last_line",
    "duplicated_ids",
    "extra_column",
    "only_bad_rows",
    "non_utf8_bytes",
    "mixed_offsets",
)


@pytest.mark.parametrize("case", [c for c in CASES if c.name in FULL], ids=list(FULL))
def test_full_job(spark: SparkSession, tmp_path: Path, case: Case) -> None:
    _write(tmp_path, case)
    cfg = tx_config(tmp_path, "validation.volume_tolerance=null", *case.overrides)
    if case.error is not None:
        with pytest.raises(case.error) as info:
            validate(spark, cfg, ctx(DAY))
        assert case.message in str(info.value)
        # A blocked run writes no data rows, only its failed validation_runs row.
        assert not io.table_exists(spark, cfg, "validated")
        runs = io.read_table(spark, cfg, "validation_runs").collect()
        assert [r["success"] for r in runs] == [False]
        return
    summary = validate(spark, cfg, ctx(DAY))
    assert (summary.validated, summary.quarantined) == (case.validated, case.quarantined)
    assert summary.rows_in == case.validated + case.quarantined
    _check_reasons(summary.reason_counts, case)
    # Reconciliation at the storage layer: what Delta holds for the date.
    assert io.read_table(spark, cfg, "validated").count() == case.validated
    quarantine = io.read_table(spark, cfg, "quarantine").collect()
    assert len(quarantine) == case.quarantined
    assert all(r["raw_record"] and r["reasons"] and r["source_file"] for r in quarantine)


def test_missing_input_is_input_error(spark: SparkSession, tmp_path: Path) -> None:
    cfg = tx_config(tmp_path)
    with pytest.raises(InputError, match="raw"):
        validate(spark, cfg, ctx(DAY))


def test_corpus_has_25_kinds() -> None:
    assert len(CASES) >= 25
