"""The shapes that keep validation cheap, each checked for what it must still return.

* the reasons array is compiled (no lambda, which Spark evaluates row by row);
* per-date and per-reason counts come from one grouped pass;
* the quantile expectation is approximate (bounded memory) and still right.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import great_expectations as gx
import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DateType, StringType, StructField, StructType

from lakehound.validation import gx_engine
from lakehound.validation.rules import REASONS, classify, compact
from lakehound.validation.runner import _counts
from schemas.expectations import (
    ExpectColumnApproxQuantileValuesToBeBetween,
    SuiteOptions,
    build_expectations,
)
from schemas.registry import get_contract

from .conftest import tx_config

D1, D2 = dt.date(2024, 1, 2), dt.date(2024, 1, 3)


def test_compact_keeps_order_and_drops_nulls(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("b", None, "a"), (None, None, None), ("c", "a", None)], "x string, y string, z string"
    )
    got = [r[0] for r in df.select(compact(F.array("x", "y", "z"))).collect()]
    assert got == [["b", "a"], [], ["c", "a"]]


def test_reasons_are_compiled(spark: SparkSession, tmp_path: Path) -> None:
    cfg = tx_config(tmp_path)
    contract = get_contract("transactions")
    raw = spark.createDataFrame(
        [],
        StructType(
            [StructField(c, StringType()) for c in contract.source_columns]
            + [
                StructField("_raw_record", StringType()),
                StructField("_malformed", StringType()),
                StructField("_source_file", StringType()),
            ]
        ),
    ).withColumn("_malformed", F.col("_malformed").cast("boolean"))
    now = dt.datetime(2024, 1, 3, tzinfo=dt.UTC)
    out = classify(raw, contract, cfg.validation, run_date=None, fallback_date=D1, now=now)
    plan = out._jdf.queryExecution().executedPlan().toString()
    # A higher-order function (filter with a lambda) is a codegen fallback: every rule
    # under it would be evaluated interpreted, row by row.
    assert "lambdafunction" not in plan
    assert "array_except" in plan


def test_counts_one_pass(spark: SparkSession) -> None:
    schema = StructType(
        [StructField("event_date", DateType()), StructField(REASONS, ArrayType(StringType()))]
    )
    rows = [
        (D1, []),
        (D1, []),
        (D1, ["missing:amount", "not_in_set:currency"]),
        (D1, ["missing:amount"]),
        (D1, ["missing:amount"]),
        (D2, []),
        (D2, ["duplicate"]),
        (D2, ["not_in_set:currency", "missing:amount"]),
    ]
    got = _counts(spark.createDataFrame(rows, schema))
    assert set(got) == {D1, D2}
    assert (got[D1].rows_in, got[D1].validated, got[D1].quarantined) == (5, 2, 3)
    assert got[D1].reason_counts == {"missing:amount": 3, "not_in_set:currency": 1}
    assert (got[D2].rows_in, got[D2].validated, got[D2].quarantined) == (3, 1, 2)
    assert got[D2].reason_counts == {
        "duplicate": 1,
        "not_in_set:currency": 1,
        "missing:amount": 1,
    }


def test_quantile_expectation_is_approximate_and_right(spark: SparkSession) -> None:
    contract = get_contract("transactions")
    built = [
        e
        for e in build_expectations(contract, SuiteOptions(quantile_relative_error=0.01))
        if isinstance(e, ExpectColumnApproxQuantileValuesToBeBetween)
    ]
    assert [e.allow_relative_error for e in built] == [0.01]

    values = np.random.default_rng(7).lognormal(3.0, 1.0, 20_000)
    df = spark.createDataFrame([(float(v),) for v in values], "amount double")
    quantiles = [0.1, 0.5, 0.9]
    exact = np.quantile(values, quantiles, method="lower")
    wide = [[0.0, 1e9]] * len(quantiles)

    def observed(error: float) -> list[float]:
        exp = ExpectColumnApproxQuantileValuesToBeBetween(
            column="amount",
            quantile_ranges={"quantiles": quantiles, "value_ranges": wide},
            allow_relative_error=error,
        )
        # Through a GX suite and context: the float must survive GX's round trip
        # (the stock expectation turns it into a string its Spark metric rejects).
        (outcome,), _ = gx_engine.run_suite(
            df,
            gx.ExpectationSuite(name=f"q{error}", expectations=[exp]),
            run_name=f"q{error}",
            blocking=[],
            docs_dir=None,
        )
        assert outcome.success, outcome.observed
        return list(json.loads(outcome.observed)["values"])

    assert observed(0.0) == list(exact)
    sorted_values = np.sort(values)
    for q, got in zip(quantiles, observed(0.01), strict=True):
        rank = np.searchsorted(sorted_values, got) / len(values)
        assert abs(rank - q) <= 0.01 + 1 / len(values), (q, got, rank)
