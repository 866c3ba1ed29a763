"""jobs/featurize.py for every feature source: registry columns, idempotent per date,
reads only the look-back, late events within lateness re-featurized, later ones counted."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs import featurize
from lakehound import io
from lakehound.cli import RunContext
from lakehound.config import (
    Config,
    GenerateSettings,
    LogGenerateSettings,
    SensorGenerateSettings,
)
from lakehound.features import build
from lakehound.features.registry import REGISTRY, feature_names
from lakehound.generators import logs as glogs
from lakehound.generators import sensors as gsensors
from lakehound.generators import transactions as gtx

Make = Callable[..., Config]


def _validated(df: DataFrame, cfg: Config) -> None:
    out = df.withColumn(io.DATE_COL, F.to_date("event_ts"))
    dates = sorted(r[0] for r in out.select(io.DATE_COL).distinct().collect())
    io.replace_dates(out, cfg, "validated", dates)


def _run(spark: SparkSession, cfg: Config, date: dt.date | None = None) -> dict:
    return featurize.run(spark, cfg, RunContext(job="featurize", date=date))  # type: ignore[return-value]


def _features(spark: SparkSession, cfg: Config) -> DataFrame:
    return io.read_table(spark, cfg, "features")


def test_transactions_job_idempotent_lookback_and_lateness(
    spark: SparkSession, make_cfg: Make
) -> None:
    cfg = make_cfg(
        "transactions", "generate.days=4", "generate.accounts=40", "generate.merchants=10"
    )
    raw, labels = gtx.generate(spark, cfg.generate)
    _validated(raw, cfg)
    io.overwrite(labels, cfg, "labels")
    d3 = dt.date(2024, 1, 3)
    _run(spark, cfg)
    feats = _features(spark, cfg)
    assert feats.columns == [*build.KEY_COLUMNS, *feature_names("transactions")]
    n = {r[0]: r[1] for r in feats.groupBy(io.DATE_COL).count().collect()}
    n_raw = {r[0]: r[1] for r in raw.groupBy(F.to_date("event_ts")).count().collect()}
    assert n == n_raw  # one feature row per validated transaction, every date
    before = feats.where(F.col(io.DATE_COL) == d3).orderBy("event_id").collect()
    # Re-running one date replaces exactly its rows: same rows, no duplicates.
    _run(spark, cfg, d3)
    again = _features(spark, cfg)
    assert again.count() == sum(n.values())
    assert again.where(F.col(io.DATE_COL) == d3).orderBy("event_id").collect() == before
    # (That re-run read only D + the look-back: transactions need 30 days.)
    assert build.lookback_days(cfg) == 30
    # Late events: one arrives for Jan 3 (within 24 h of Jan 4), one for Jan 1 (too late).
    late = spark.createDataFrame(
        [
            (
                "late-3",
                "acct-00001",
                "m-0001",
                "food",
                10.0,
                "EUR",
                "DE",
                "pos",
                dt.datetime(2024, 1, 3, 23, 0),
            ),
            (
                "late-1",
                "acct-00001",
                "m-0001",
                "food",
                10.0,
                "EUR",
                "DE",
                "pos",
                dt.datetime(2024, 1, 1, 9, 0),
            ),
        ],
        raw.schema,
    ).withColumn(io.DATE_COL, F.to_date("event_ts"))
    io.append(late.select(*io.read_table(spark, cfg, "validated").columns), cfg, "validated")
    summary = _run(spark, cfg, dt.date(2024, 1, 4))
    assert summary["late_dates_redone"] == 1 and summary["too_late"] == 1
    ids = {r[0] for r in _features(spark, cfg).select("event_id").collect()}
    assert "late-3" in ids and "late-1" not in ids


def test_missing_validated_is_input_error(make_cfg: Make, tmp_path: object) -> None:
    cfg = make_cfg("sensors")
    rc = featurize.main(
        ["--config", "conf/sensors.yaml", "--set", f"lakehouse={cfg.lakehouse}",
         "--set", "spark.shuffle_partitions=2"]
    )  # fmt: skip
    assert rc == 4


def test_logs_job_writes_registry_columns_and_templates(
    spark: SparkSession, make_cfg: Make
) -> None:
    cfg = make_cfg("logs")
    raw, _ = glogs.generate(
        spark,
        GenerateSettings(days=2, logs=LogGenerateSettings(hosts=3, events_per_host_minute=0.2)),
    )
    _validated(raw, cfg)
    _run(spark, cfg, dt.date(2024, 1, 1))
    t1 = io.read_table(spark, cfg, "templates").count()
    first = _features(spark, cfg).orderBy("event_id").collect()
    _run(spark, cfg, dt.date(2024, 1, 2))
    feats = _features(spark, cfg)
    assert feats.columns == [*build.KEY_COLUMNS, *feature_names("logs")]
    assert io.read_table(spark, cfg, "templates").count() >= t1 > 5
    # Day 2 (with its own new templates) leaves day 1 as it was.
    assert (
        feats.where(F.col(io.DATE_COL) == dt.date(2024, 1, 1)).orderBy("event_id").collect()
        == first
    )
    _run(spark, cfg, dt.date(2024, 1, 1))  # idempotent: a re-run adds no template, no row
    assert io.read_table(spark, cfg, "templates").dropDuplicates(["masked"]).count() == (
        io.read_table(spark, cfg, "templates").count()
    )
    assert _features(spark, cfg).count() == feats.count()


def test_sensors_job(spark: SparkSession, make_cfg: Make) -> None:
    cfg = make_cfg("sensors")
    raw, _ = gsensors.generate(
        spark, GenerateSettings(days=2, sensors=SensorGenerateSettings(machines=2))
    )
    _validated(raw, cfg)
    _run(spark, cfg)
    feats = _features(spark, cfg)
    assert feats.columns == [*build.KEY_COLUMNS, *feature_names("sensors")]
    assert build.lookback_days(cfg) == 1  # 6-hour windows need one day of history
    # One row per minute from each machine's first to its last reading (pandas count).
    pdf = raw.select("machine_id", "event_ts").toPandas()
    span = pdf.groupby("machine_id")["event_ts"].agg(["min", "max"])
    expected = int(((span["max"] - span["min"]).dt.total_seconds() // 60 + 1).sum())
    assert feats.count() == expected
    assert feats.where("is_gap = 0").count() == pdf.drop_duplicates().shape[0]


@pytest.mark.parametrize("source", sorted(REGISTRY))
def test_registry_names_equal_builder_columns(
    spark: SparkSession, make_cfg: Make, source: str
) -> None:
    """The columns each builder writes equal the registry's names for that source."""
    d = dt.date(2024, 1, 1)
    t = dt.datetime(2024, 1, 1, 10, 0)
    cfg = make_cfg("transactions", f"features.source={source}")
    if source == "log_sessions":
        cfg = make_cfg("logs", f"features.source={source}")
    if source == "transactions":
        df = spark.createDataFrame(
            [("t1", "A", "m", "DE", 5.0, t)],
            "transaction_id string, account_id string, merchant_id string, country string, amount double, event_ts timestamp",
        )
    elif source == "cardtx":
        df = spark.createDataFrame(
            [(1, t, 1, 2, 5.0, 0)],
            "TRANSACTION_ID long, TX_DATETIME timestamp, CUSTOMER_ID long, TERMINAL_ID long, TX_AMOUNT double, TX_FRAUD long",
        )
    elif source == "bgl":
        df = spark.createDataFrame(
            [("- 1704103200 2024.01.01 R0 2024-01-01-02.00.00.000001 R0 RAS KERNEL INFO ok 1",)],
            "value string",
        )
    elif source == "log_sessions":
        df = spark.createDataFrame(
            [("2024-01-01T10:00:00Z h1 sshd[1]: INFO session closed for user user7",)],
            "line string",
        )
    elif source == "logs":
        df = spark.createDataFrame(
            [("2024-01-01T10:00:00Z h1 app[1]: INFO started 3",)], "line string"
        )
    else:
        idc = build.SERIES_ID[source]
        cols = ", ".join(f"{c} double" for c in build.registry.SERIES_SPECS[source].value_cols)
        vals = tuple(1.0 for _ in build.registry.SERIES_SPECS[source].value_cols)
        df = spark.createDataFrame([("x", t, *vals)], f"{idc} string, event_ts timestamp, {cols}")
    out = build.build_features(df, cfg, [d])
    assert out.columns == [*build.KEY_COLUMNS, *[f.name for f in REGISTRY[source]]]
    assert out.count() >= 1
