"""Record an analyst's verdict on an alert in the Delta ``feedback`` table.

    python -m jobs.feedback --config conf/transactions.yaml --event-id T123 --label true_positive
    spark-submit jobs/feedback.py --config conf/transactions.yaml --event-id T123 \\
        --label false_positive --analyst alice --note "known merchant"

or with SQL: ``INSERT INTO transactions.feedback VALUES ('T123', 'true_positive',
'alice', '', current_timestamp())``. One verdict per (event, analyst): the CLI
MERGEs, so re-running it updates instead of duplicating; where several analysts
disagree the latest verdict counts. Training drops confirmed anomalies from the
normal data and tunes thresholds and the supervised member on the verdicts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakehound import io
from lakehound.cli import setup_logging
from lakehound.config import Config, load_config
from lakehound.errors import ConfigError, InputError, LakeHoundError

FEEDBACK = "feedback"
FEEDBACK_SCHEMA = "event_id string, label string, analyst string, note string, created_at timestamp"
LABELS = ("true_positive", "false_positive")


def record(
    spark: SparkSession,
    cfg: Config,
    event_id: str,
    label: str,
    analyst: str = "",
    note: str = "",
    check_scored: bool = True,
) -> None:
    """Upsert one verdict (keyed by event and analyst)."""
    if label not in LABELS:
        raise ConfigError(f"--label must be one of {', '.join(LABELS)}, got {label!r}")
    if check_scored and io.table_exists(spark, cfg, "scores"):
        scored = io.read_table(spark, cfg, "scores").where(F.col("event_id") == event_id)
        if not scored.limit(1).count():
            raise InputError(
                f"event {event_id!r} is not in {io.table_name(cfg, 'scores')}; nothing to label"
            )
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    row = spark.createDataFrame([(event_id, label, analyst, note, now)], FEEDBACK_SCHEMA)
    if not io.table_exists(spark, cfg, FEEDBACK):
        io.append(row, cfg, FEEDBACK)
        return
    from delta.tables import DeltaTable

    (
        DeltaTable.forPath(spark, io.table_path(cfg, FEEDBACK))
        .alias("t")
        .merge(row.alias("s"), "t.event_id = s.event_id AND t.analyst = s.analyst")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )
    io.register(spark, cfg, FEEDBACK)


def verdicts(spark: SparkSession, cfg: Config) -> DataFrame | None:
    """event_id, y (1 = confirmed anomaly): the latest verdict per event, or None."""
    if not io.table_exists(spark, cfg, FEEDBACK):
        return None
    fb = io.read_table(spark, cfg, FEEDBACK).where(F.col("label").isin(*LABELS))
    latest = Window.partitionBy("event_id").orderBy(F.col("created_at").desc())
    return (
        fb.withColumn("_n", F.row_number().over(latest))
        .where("_n = 1")
        .select("event_id", (F.col("label") == "true_positive").cast("int").alias("y"))
    )


def confirmed_anomalies(spark: SparkSession, cfg: Config) -> DataFrame | None:
    v = verdicts(spark, cfg)
    return None if v is None else v.where("y = 1").select("event_id")


def labelled_events(
    spark: SparkSession, cfg: Config, use_labels: bool = True, use_feedback: bool = True
) -> DataFrame | None:
    """event_id, y, anomaly_type from the ``labels`` table and ``feedback`` (feedback wins).

    None when neither exists. Only a labels table keyed by event counts
    (:func:`lakehound.io.event_labels`).
    """
    parts: list[DataFrame] = []
    lab = io.event_labels(spark, cfg) if use_labels else None
    if lab is not None:
        kind = (
            F.col("anomaly_type").cast("string") if "anomaly_type" in lab.columns else F.lit(None)
        )
        parts.append(
            lab.select(
                F.col("event_id").cast("string").alias("event_id"),
                F.col("is_anomaly").cast("int").alias("y_l"),
                kind.alias("anomaly_type"),
            )
        )
    v = verdicts(spark, cfg) if use_feedback else None
    if not parts and v is None:
        return None
    if v is None:
        return parts[0].select("event_id", F.col("y_l").alias("y"), "anomaly_type")
    if not parts:
        return v.select("event_id", "y", F.lit(None).cast("string").alias("anomaly_type"))
    joined = parts[0].join(v, "event_id", "full_outer")
    return joined.select("event_id", F.coalesce("y", "y_l").alias("y"), "anomaly_type")


def main(argv: list[str] | None = None) -> int:
    from lakehound.session import build_session

    setup_logging()
    parser = argparse.ArgumentParser(prog="jobs.feedback", description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--env")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--event-id", required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--analyst", default="")
    parser.add_argument("--note", default="")
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            if exc.code == 0:
                return 0
            raise ConfigError("jobs.feedback: bad arguments (see --help)") from None
        cfg = load_config(args.config, args.overrides, args.env)
        if args.label not in LABELS:
            raise ConfigError(f"--label must be one of {', '.join(LABELS)}, got {args.label!r}")
        spark = build_session(cfg.spark, app_name=f"lakehound-feedback-{cfg.dataset}")
        record(spark, cfg, args.event_id, args.label, args.analyst, args.note)
    except LakeHoundError as exc:
        print(f"lakehound feedback: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
