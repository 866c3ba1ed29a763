"""The Spark transaction generator: deterministic, labelled, habits respected."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehound.config import GenerateSettings
from lakehound.generators.transactions import generate
from schemas.transactions import TRANSACTIONS

SETTINGS = GenerateSettings(
    seed=7,
    start_date=dt.date(2024, 3, 1),
    days=3,
    accounts=50,
    merchants=40,
    tx_per_account_day=2.0,
    point_rate=0.05,
    contextual_rate=0.05,
    collective_bursts_per_day=2,
    burst_size=5,
)


def test_same_seed_same_rows_other_seed_other_rows(spark: SparkSession) -> None:
    a, _ = generate(spark, SETTINGS)
    b, _ = generate(spark, SETTINGS.model_copy(update={"seed": 7}))
    assertDataFrameEqual(a, b)
    c, _ = generate(spark, SETTINGS.model_copy(update={"seed": 8}))
    assert a.exceptAll(c).count() > 0


def test_raw_feed_matches_contract_and_carries_no_labels(spark: SparkSession) -> None:
    raw, _ = generate(spark, SETTINGS)
    assert raw.columns == TRANSACTIONS.column_names
    assert raw.select("transaction_id").distinct().count() == raw.count()
    dates = {r[0] for r in raw.select(F.to_date("event_ts")).distinct().collect()}
    assert dates == {dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)}


def test_labels_cover_every_row_and_the_three_kinds(spark: SparkSession) -> None:
    raw, labels = generate(spark, SETTINGS)
    assert labels.count() == raw.count()
    kinds = {
        r["anomaly_type"]: r["count"] for r in labels.groupBy("anomaly_type").count().collect()
    }
    # 3 days x 2 bursts x 5 payments, written out by hand.
    assert kinds["collective"] == 30
    assert kinds["point"] > 0 and kinds["contextual"] > 0
    assert labels.where("is_anomaly != (anomaly_type IS NOT NULL)").count() == 0


def test_point_anomalies_are_far_above_the_accounts_usual_amount(spark: SparkSession) -> None:
    raw, labels = generate(spark, SETTINGS)
    tx = raw.join(labels, "transaction_id")
    usual = (
        tx.where("anomaly_type IS NULL")
        .groupBy("account_id")
        .agg(F.expr("percentile_approx(amount, 0.5)").alias("median"))
    )
    points = tx.where("anomaly_type = 'point'").join(usual, "account_id")
    # Injected at 15-40x the account's typical amount (a lognormal draw).
    assert points.where("amount < 3 * median").count() == 0


def test_collective_bursts_are_small_and_minutes_apart(spark: SparkSession) -> None:
    raw, labels = generate(spark, SETTINGS)
    burst = raw.join(labels.where("anomaly_type = 'collective'"), "transaction_id")
    stats = burst.agg(F.max("amount"), F.min("amount")).first()
    assert stats[0] <= 3.0 and stats[1] >= 0.5
    spans = (
        burst.withColumn("b", F.regexp_extract("transaction_id", r"tx-burst-(\d+)-", 1))
        .groupBy("b")
        .agg((F.max("event_ts").cast("long") - F.min("event_ts").cast("long")).alias("span"))
    )
    # 5 payments ~2 minutes apart (+-30 s jitter): the burst lasts 7-9 minutes.
    assert spans.where("span < 420 OR span > 540").count() == 0
