"""Featurize validated rows into the ``features`` Delta table, one date at a time.

    spark-submit jobs/featurize.py --config conf/transactions.yaml --date 2024-01-08
    python -m jobs.featurize --config conf/<dataset>.yaml

Computing day D reads only D plus the look-back its feature source needs
(lakehound.features.build.lookback_days) from ``validated``, and replaces exactly
D's rows in ``features`` (idempotent). Late events: every run records the
validated row count of each date it featurized in ``feature_runs``; a later run
that finds more rows for an earlier date re-featurizes that date when it lies
within ``features.lateness_hours`` of the run's first date, and otherwise counts
the rows as too late and reports them (they stay in ``validated``, unfeaturized).
Log sources mine Drain templates per date and append the new ones to
``templates``, so a date's templates never depend on later dates.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import sys
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehound import io
from lakehound.cli import RunContext, run_job
from lakehound.config import Config
from lakehound.dates import lookback_filter, run_dates
from lakehound.features import build
from lakehound.features import logs as flogs

log = logging.getLogger("lakehound.featurize")

RUNS = "feature_runs"
TEMPLATES = "templates"


def build_features(
    validated: DataFrame,
    cfg: Config,
    dates: list[dt.date],
    labels: DataFrame | None = None,
    templates: DataFrame | None = None,
) -> DataFrame:
    """Pure transform: validated rows (with look-back) -> the run dates' feature rows."""
    return build.build_features(validated, cfg, dates, labels=labels, templates=templates)


def late_dates(
    spark: SparkSession, cfg: Config, counts: dict[dt.date, int], dates: list[dt.date]
) -> tuple[list[dt.date], dict[dt.date, int]]:
    """(earlier dates to re-featurize, {too-late date: late rows}) from ``feature_runs``."""
    if not io.table_exists(spark, cfg, RUNS):
        return [], {}
    recorded = {
        r["event_date"]: int(r["source_rows"])
        for r in io.read_table(spark, cfg, RUNS)
        .groupBy("event_date")
        .agg(F.max_by("source_rows", "run_at").alias("source_rows"))
        .collect()
    }
    first = min(dates)
    # A date is within lateness if its end is at most lateness_hours before the first run date.
    horizon = first - dt.timedelta(days=math.ceil(cfg.features.lateness_hours / 24))
    redo: list[dt.date] = []
    dropped: dict[dt.date, int] = {}
    for d, n in counts.items():
        if d in dates or d not in recorded or n <= recorded[d]:
            continue
        if d >= horizon:
            redo.append(d)
        else:
            dropped[d] = n - recorded[d]
    return sorted(redo), dropped


def templates_for(
    spark: SparkSession, cfg: Config, parsed: DataFrame, dates: list[dt.date]
) -> DataFrame:
    """The template mapping after mining each run date's new message shapes.

    Messages already in ``templates`` keep their template; a date's new shapes are
    mined among themselves and appended, so later dates never re-shape earlier ones.
    """
    lines = parsed.where(F.to_date("event_ts").isin(list(dates)))
    if io.table_exists(spark, cfg, TEMPLATES):
        known = io.read_table(spark, cfg, TEMPLATES).select("masked")
        masked = lines.withColumn("_m", flogs.mask_message(F.col("message")))
        lines = masked.join(known, masked["_m"] == known["masked"], "left_anti").drop("_m")
    # One pass, each date's new shapes mined among themselves (per_day).
    mined = flogs.mine_templates(lines, per_day=True)
    first = lines.groupBy(flogs.mask_message(F.col("message")).alias("masked")).agg(
        F.to_date(F.min("event_ts")).alias("first_date")
    )
    io.append(mined.join(first, "masked"), cfg, TEMPLATES)
    return io.read_table(spark, cfg, TEMPLATES).dropDuplicates(["masked"])


def run(spark: SparkSession, cfg: Config, ctx: RunContext) -> dict[str, Any]:
    validated = io.read_table(spark, cfg, "validated")
    dates = run_dates(validated, ctx.date, f"{io.table_name(cfg, 'validated')}")
    days = build.lookback_days(cfg)
    window = validated.where(lookback_filter(dates, days))
    counts = {
        r[io.DATE_COL]: int(r["count"]) for r in window.groupBy(io.DATE_COL).count().collect()
    }
    redo, dropped = late_dates(spark, cfg, counts, dates)
    if dropped:
        log.warning(
            "late events beyond features.lateness_hours=%s, not featurized: %s",
            cfg.features.lateness_hours,
            {d.isoformat(): n for d, n in sorted(dropped.items())},
        )
    if redo:
        log.info("re-featurizing %s for late events", [d.isoformat() for d in redo])
        dates = sorted(set(dates) | set(redo))
        window = validated.where(lookback_filter(dates, days))
    src = build.source_of(cfg)
    labels = io.read_table(spark, cfg, "labels") if _has_labels(spark, cfg, src) else None
    templates = None
    with ctx.stage("featurize"):
        if src in build.LOG_SOURCES:
            parsed = build.parse_logs(window, cfg)
            if "parse_ok" in parsed.columns:
                unparsed = parsed.where(~F.col("parse_ok") & F.col(io.DATE_COL).isin(dates)).count()
                if unparsed:
                    log.warning("%d log line(s) did not parse and are not featurized", unparsed)
            templates = templates_for(spark, cfg, parsed, dates)
        feats = build_features(window, cfg, dates, labels, templates)
        io.replace_dates(feats, cfg, "features", dates)
    n = io.read_table(spark, cfg, "features").where(F.col(io.DATE_COL).isin(dates)).count()
    now = dt.datetime.now(dt.UTC)
    runs = spark.createDataFrame(
        [(d, counts.get(d, 0), now) for d in dates],
        "event_date date, source_rows long, run_at timestamp",
    )
    io.append(runs, cfg, RUNS)
    late_rows = sum(dropped.values())
    log.info(
        "features: %d rows for %d date(s); late rows re-featurized dates %d, too late %d",
        n,
        len(dates),
        len(redo),
        late_rows,
    )
    return {"rows": n, "dates": len(dates), "late_dates_redone": len(redo), "too_late": late_rows}


def _has_labels(spark: SparkSession, cfg: Config, src: str) -> bool:
    if src not in ("transactions", "cardtx") or not io.table_exists(spark, cfg, "labels"):
        return False
    cols = io.read_table(spark, cfg, "labels").columns
    return "transaction_id" in cols and "is_anomaly" in cols


def main(argv: list[str] | None = None) -> int:
    return run_job("featurize", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
