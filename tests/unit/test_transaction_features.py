"""Transaction features: hand-computed values and point-in-time correctness."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.testing import assertDataFrameEqual

from lakehound.features.registry import feature_names
from lakehound.features.transactions import transaction_features

FEATURE_COLUMNS = feature_names("transactions")

T0 = dt.datetime(2024, 1, 10, 10, 0, 0)
COLS = "transaction_id string, account_id string, merchant_id string, country string, amount double, event_ts timestamp"


def _rows(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, COLS)


def _base() -> list[tuple]:
    m = dt.timedelta(minutes=1)
    return [
        ("a1", "A", "m1", "DE", 10.0, T0),
        ("a2", "A", "m1", "DE", 12.0, T0 + 10 * m),
        ("a3", "A", "m2", "FR", 11.0, T0 + 130 * m),
        ("b1", "B", "m1", "DE", 50.0, T0 + 5 * m),
    ]


def test_hand_computed_values(spark: SparkSession) -> None:
    f = {r["event_id"]: r for r in transaction_features(_rows(spark, _base())).collect()}
    assert f["a1"]["acct_count_1h"] == 1.0
    assert f["a2"]["acct_count_1h"] == 2.0
    assert f["a3"]["acct_count_1h"] == 1.0  # 2 h after a2
    assert f["a3"]["acct_count_1d"] == 3.0
    assert f["a2"]["acct_secs_since_prev"] == pytest.approx(math.log1p(600))
    assert f["a1"]["acct_secs_since_prev"] == pytest.approx(math.log1p(30 * 86400))
    assert f["a2"]["acct_new_merchant"] == 0.0 and f["a1"]["acct_new_merchant"] == 1.0
    assert f["a3"]["acct_new_merchant"] == 1.0 and f["a3"]["acct_new_country"] == 1.0
    assert f["b1"]["merchant_count_1d"] == 2.0  # a1 and b1 paid m1 by then, a2 comes later
    assert f["a2"]["merchant_count_1d"] == 3.0
    assert f["a2"]["log_amount"] == pytest.approx(math.log1p(12.0))
    assert f["a1"]["hour_sin"] == pytest.approx(math.sin(2 * math.pi * 10 / 24))
    # 2024-01-10 is a Wednesday: day 2 with Monday = 0.
    assert f["a1"]["dow_cos"] == pytest.approx(math.cos(2 * math.pi * 2 / 7))
    # Fewer than 3 earlier payments: no evidence, z = 0 by policy.
    assert f["a3"]["acct_amount_z_30d"] == 0.0
    assert set(FEATURE_COLUMNS) <= set(f["a1"].asDict())


def test_z_score_against_own_history(spark: SparkSession) -> None:
    d = dt.timedelta(days=1)
    rows = [(f"h{i}", "A", "m1", "DE", amt, T0 + i * d) for i, amt in enumerate([10.0, 20.0, 40.0])]
    rows.append(("x", "A", "m1", "DE", 400.0, T0 + 3 * d))
    f = {r["event_id"]: r for r in transaction_features(_rows(spark, rows)).collect()}
    logs = [math.log1p(a) for a in (10.0, 20.0, 40.0)]
    mean = sum(logs) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in logs) / 2)
    assert f["x"]["acct_amount_z_30d"] == pytest.approx((math.log1p(400.0) - mean) / std)


def test_appending_later_events_never_changes_earlier_rows(spark: SparkSession) -> None:
    before = transaction_features(_rows(spark, _base()))
    later = [
        ("a4", "A", "m1", "DE", 999.0, T0 + dt.timedelta(hours=3)),
        ("b2", "B", "m3", "US", 1.0, T0 + dt.timedelta(days=2)),
    ]
    after = transaction_features(_rows(spark, _base() + later)).where(
        "event_id NOT IN ('a4', 'b2')"
    )
    assertDataFrameEqual(after, before)
