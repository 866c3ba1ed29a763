"""Transaction window grid, delayed merchant/terminal risk, cardtx (handbook), travel speed.

Expected values are hand-computed, or come from the Fraud Detection Handbook's own
pandas implementation (re-typed below) run on a slice of the real data.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehound.features.registry import feature_names
from lakehound.features.transactions import (
    cardtx_features,
    transaction_features,
    travel_speed_kmh,
)
from tests.conftest import SHARED_DATA, require_shared

T0 = dt.datetime(2024, 1, 10, 10, 0, 0)
M = dt.timedelta(minutes=1)
D = dt.timedelta(days=1)
COLS = (
    "transaction_id string, account_id string, merchant_id string, country string, "
    "amount double, event_ts timestamp"
)

CARDTX = SHARED_DATA / "transactions"
CARDTX_FILE = CARDTX / "fraud_sim_2018-04_2018-05.parquet"


def _tx(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, COLS)


def _base() -> list[tuple]:
    return [
        ("a1", "A", "m1", "DE", 10.0, T0),
        ("a2", "A", "m1", "DE", 12.0, T0 + 10 * M),
        ("a3", "A", "m2", "FR", 11.0, T0 + 130 * M),
        ("b1", "B", "m1", "DE", 50.0, T0 + 5 * M),
    ]


def test_window_grid_hand_computed(spark: SparkSession) -> None:
    f = {r["event_id"]: r for r in transaction_features(_tx(spark, _base())).collect()}
    l10, l12, l11, l50 = (math.log1p(v) for v in (10.0, 12.0, 11.0, 50.0))
    assert f["a3"]["acct_count_30d"] == 3.0
    assert f["a3"]["acct_amount_sum_30d"] == pytest.approx(math.log1p(33.0))
    assert f["a2"]["acct_amount_mean_1h"] == pytest.approx((l10 + l12) / 2)
    assert f["a2"]["acct_amount_std_1h"] == pytest.approx(statistics.stdev([l10, l12]))
    assert f["a1"]["acct_amount_std_1h"] == 0.0  # one payment: no spread
    assert f["a3"]["acct_amount_mean_1h"] == pytest.approx(l11)  # a2 is 2 h earlier
    assert f["a3"]["acct_amount_mean_7d"] == pytest.approx((l10 + l12 + l11) / 3)
    assert f["a2"]["merchant_count_1h"] == 3.0  # a1, b1, a2 at m1
    assert f["b1"]["merchant_amount_mean_1d"] == pytest.approx((l10 + l50) / 2)
    assert f["b1"]["merchant_amount_sum_1d"] == pytest.approx(math.log1p(60.0))
    assert f["a3"]["merchant_count_30d"] == 1.0
    assert f["a1"]["merchant_risk_7d"] == 0.0  # no labels given


def test_replayed_transaction_id_keeps_one_row_per_event(spark: SparkSession) -> None:
    # Validation de-duplicates within a run, so the same id can come back on a later
    # date; the look-back then holds both events. Each keeps its own merchant windows.
    rows = [*_base(), ("a1", "C", "m1", "DE", 20.0, T0 + 2 * D)]
    out = transaction_features(_tx(spark, rows)).collect()
    assert len(out) == len(rows)
    a1 = sorted((r["event_ts"], r["merchant_count_1d"]) for r in out if r["event_id"] == "a1")
    # The first a1 is m1's first payment; two days later only the replay is in 1 day.
    assert a1 == [(T0, 1.0), (T0 + 2 * D, 1.0)]
    later = next(r for r in out if r["event_id"] == "a1" and r["event_ts"] == T0 + 2 * D)
    assert later["merchant_count_7d"] == 4.0  # a1, b1, a2 and the replay


def test_emit_returns_the_chosen_rows_with_their_full_history(spark: SparkSession) -> None:
    rows = [*_base(), ("c1", "C", "m1", "DE", 30.0, T0 + 3 * D)]
    full = {r["event_id"]: r.asDict() for r in transaction_features(_tx(spark, rows)).collect()}
    emit = F.col("event_ts") >= T0 + D
    some = transaction_features(_tx(spark, rows), emit=emit).collect()
    assert [r["event_id"] for r in some] == ["c1"]
    assert some[0].asDict() == full["c1"]
    assert full["c1"]["merchant_count_7d"] == 4.0  # a1, b1, a2 from before the emitted day


def test_emitted_accounts_keep_their_history_and_the_others_feed_merchant_windows(
    spark: SparkSession,
) -> None:
    # A emits a later payment over its own history; B emits nothing, and its row must
    # still count for merchant m1.
    later = [
        ("a4", "A", "m1", "DE", 20.0, T0 + D + M),
        ("c1", "C", "m1", "DE", 30.0, T0 + D + 2 * M),
    ]
    rows = [*_base(), *later]
    full = {r["event_id"]: r.asDict() for r in transaction_features(_tx(spark, rows)).collect()}
    emit = F.col("event_ts") >= T0 + D
    some = {
        r["event_id"]: r.asDict()
        for r in transaction_features(_tx(spark, rows), emit=emit).collect()
    }
    assert sorted(some) == ["a4", "c1"]
    assert some == {k: full[k] for k in ("a4", "c1")}
    # a4: A's a1, a2, a3 and itself; m1's a1, a2, b1 and a4.
    assert (some["a4"]["acct_count_7d"], some["a4"]["merchant_count_7d"]) == (4.0, 4.0)
    # c1: C's first payment; m1's a1, a2, b1, a4 and c1.
    assert (some["c1"]["acct_count_7d"], some["c1"]["merchant_count_7d"]) == (1.0, 5.0)


def test_merchant_risk_uses_labels_only_after_the_delay(spark: SparkSession) -> None:
    t = dt.datetime(2024, 3, 1, 12, 0, 0)
    rows = [
        ("f1", "A", "m9", "DE", 10.0, t),
        ("f2", "B", "m9", "DE", 10.0, t + dt.timedelta(hours=1)),
        ("f4", "C", "m9", "DE", 10.0, t + 6 * D),  # labels not old enough yet
        ("f5", "D", "m9", "DE", 10.0, t + 7 * D),  # f1 exactly 7 days old: known
        ("f3", "E", "m9", "DE", 10.0, t + 8 * D),  # f1 and f2 known
        # Window (t + 1d, t + 8d]: f1, f2 too old; f4 (fraud), f5, f3 (clean) count.
        ("f6", "F", "m9", "DE", 10.0, t + 15 * D),
    ]
    labels = spark.createDataFrame(
        [("f1", True), ("f2", False), ("f4", True), ("f5", False)],
        "transaction_id string, is_anomaly boolean",
    )
    f = {
        r["event_id"]: r["merchant_risk_7d"]
        for r in transaction_features(_tx(spark, rows), 30, labels, 7).collect()
    }
    assert f == {"f1": 0.0, "f2": 0.0, "f4": 0.0, "f5": 1.0, "f3": 0.5, "f6": pytest.approx(1 / 3)}


def test_transactions_point_in_time(spark: SparkSession) -> None:
    labels = spark.createDataFrame(
        [("a1", True), ("b1", False)], "transaction_id string, is_anomaly boolean"
    )
    before = transaction_features(_tx(spark, _base()), 30, labels, 0)
    later = [
        ("a4", "A", "m1", "DE", 900.0, T0 + 131 * M),
        ("b2", "B", "m1", "IT", 1.0, T0 + 3 * D),
    ]
    later_labels = labels.unionByName(
        spark.createDataFrame([("a4", True)], "transaction_id string, is_anomaly boolean")
    )
    after = transaction_features(_tx(spark, _base() + later), 30, later_labels, 0).where(
        F.col("event_id").isin("a1", "a2", "a3", "b1")
    )
    assertDataFrameEqual(after, before)


def _handbook_reference(df: pd.DataFrame, delay: int = 7) -> pd.DataFrame:
    """The handbook's feature code (Le Borgne et al., ch. 3.4), re-typed verbatim in logic."""
    df = df.sort_values("TX_DATETIME").copy()
    df["TX_DURING_WEEKEND"] = (df.TX_DATETIME.dt.weekday >= 5).astype(float)
    df["TX_DURING_NIGHT"] = (df.TX_DATETIME.dt.hour <= 6).astype(float)

    def card(g: pd.DataFrame) -> pd.DataFrame:
        g = g.sort_values("TX_DATETIME").set_index("TX_DATETIME", drop=False)
        for w in (1, 7, 30):
            s = g["TX_AMOUNT"].rolling(f"{w}d").sum()
            n = g["TX_AMOUNT"].rolling(f"{w}d").count()
            g[f"card_nb_tx_{w}d"] = list(n)
            g[f"card_avg_amount_{w}d"] = list(s / n)
        return g.reset_index(drop=True)

    def terminal(g: pd.DataFrame) -> pd.DataFrame:
        g = g.sort_values("TX_DATETIME").set_index("TX_DATETIME", drop=False)
        f_delay = g["TX_FRAUD"].rolling(f"{delay}d").sum()
        n_delay = g["TX_FRAUD"].rolling(f"{delay}d").count()
        for w in (1, 7, 30):
            f_dw = g["TX_FRAUD"].rolling(f"{delay + w}d").sum()
            n_dw = g["TX_FRAUD"].rolling(f"{delay + w}d").count()
            n = n_dw - n_delay
            g[f"terminal_nb_tx_{w}d"] = list(n)
            g[f"terminal_risk_{w}d"] = list((f_dw - f_delay) / n)
        return g.reset_index(drop=True).fillna(0)

    df = pd.concat([card(g) for _, g in df.groupby("CUSTOMER_ID")])
    df = pd.concat([terminal(g) for _, g in df.groupby("TERMINAL_ID")])
    return df


@pytest.mark.quality
def test_cardtx_matches_the_handbook_on_real_data(spark: SparkSession) -> None:
    require_shared(CARDTX_FILE)
    raw = spark.read.parquet(str(CARDTX_FILE)).where(
        (F.col("TX_DATETIME") < F.lit("2018-04-21").cast("timestamp_ntz"))
        & (F.col("TERMINAL_ID") < 1500)
    )
    feats = cardtx_features(raw).toPandas().set_index("event_id").sort_index()
    pdf = raw.toPandas()
    # Same-second duplicates of one card or terminal are ordered positionally by pandas;
    # leave them out of the comparison (Spark counts all peers of a second).
    ref = _handbook_reference(pdf).set_index("TRANSACTION_ID")
    ref.index = ref.index.astype(str)
    ref = ref.sort_index()
    dup = pdf.duplicated(["CUSTOMER_ID", "TX_DATETIME"], keep=False) | pdf.duplicated(
        ["TERMINAL_ID", "TX_DATETIME"], keep=False
    )
    keep = ~ref.index.isin(pdf.loc[dup, "TRANSACTION_ID"].astype(str))
    assert len(feats) == len(ref) > 20_000
    assert feats["tx_amount"].equals(ref["TX_AMOUNT"].rename("tx_amount"))
    mapping = {"tx_during_weekend": "TX_DURING_WEEKEND", "tx_during_night": "TX_DURING_NIGHT"}
    for name in feature_names("cardtx")[1:]:
        got = feats.loc[keep, name].to_numpy(dtype=float)
        want = ref.loc[keep, mapping.get(name, name)].to_numpy(dtype=float)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=name)
    # The risk is informative on real labels: fraud terminals carry higher 7-day risk.
    by = feats.join(ref["TX_FRAUD"]).groupby("TX_FRAUD")["terminal_risk_7d"].mean()
    assert by[1] > 3 * by[0]


def test_cardtx_point_in_time_and_column_names(spark: SparkSession) -> None:
    t = dt.datetime(2018, 4, 6, 23, 30)  # a Friday
    schema = "TRANSACTION_ID long, TX_DATETIME timestamp, CUSTOMER_ID long, TERMINAL_ID long, TX_AMOUNT double, TX_FRAUD long"
    rows = [
        (1, t, 7, 70, 20.0, 1),
        (2, t + dt.timedelta(hours=2), 7, 70, 40.0, 0),  # Saturday 01:30: weekend, night
        (3, t + 8 * D, 8, 70, 30.0, 0),
    ]
    base = cardtx_features(spark.createDataFrame(rows, schema))
    assert base.columns == [
        "event_id",
        "entity_id",
        "event_ts",
        "event_date",
        *feature_names("cardtx"),
    ]
    f = {r["event_id"]: r for r in base.collect()}
    assert f["1"]["tx_during_weekend"] == 0.0 and f["2"]["tx_during_weekend"] == 1.0
    assert f["1"]["tx_during_night"] == 0.0 and f["2"]["tx_during_night"] == 1.0
    assert f["2"]["card_nb_tx_1d"] == 2.0 and f["2"]["card_avg_amount_1d"] == 30.0
    # Row 3 at t + 8d: the 1-day window is (t, t + 1d] (open start, as pandas
    # rolling('1d')): row 2 only; the 7-day window (t - 6d, t + 1d]: rows 1 and 2.
    assert f["3"]["terminal_nb_tx_1d"] == 1.0 and f["3"]["terminal_risk_1d"] == 0.0
    assert f["3"]["terminal_nb_tx_7d"] == 2.0 and f["3"]["terminal_risk_7d"] == 0.5
    assert f["2"]["terminal_nb_tx_30d"] == 0.0 and f["2"]["terminal_risk_30d"] == 0.0
    later = [(4, t + 9 * D, 7, 70, 999.0, 1), (5, t + 30 * D, 8, 71, 1.0, 0)]
    after = cardtx_features(spark.createDataFrame(rows + later, schema)).where(
        F.col("event_id").isin("1", "2", "3")
    )
    assertDataFrameEqual(after, base)


def test_travel_speed_hand_computed(spark: SparkSession) -> None:
    t = dt.datetime(2024, 1, 1, 8, 0)
    df = spark.createDataFrame(
        [
            ("A", t, 48.8566, 2.3522),  # Paris
            ("A", t + dt.timedelta(hours=1), 51.5074, -0.1278),  # London, 1 h later
            ("B", t, 0.0, 0.0),
        ],
        "account_id string, event_ts timestamp, lat double, lon double",
    )
    out = {
        (r["account_id"], r["event_ts"]): r["travel_speed_kmh"]
        for r in travel_speed_kmh(df).collect()
    }
    # Paris-London great circle: 343.56 km (haversine, mean Earth radius 6371.0088 km,
    # computed by hand in plain Python), in one hour.
    assert out[("A", t + dt.timedelta(hours=1))] == pytest.approx(343.56, abs=0.01)
    assert out[("A", t)] == 0.0 and out[("B", t)] == 0.0
