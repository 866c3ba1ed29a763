"""Generate a synthetic raw feed with labelled anomalies (the demo's input).

    spark-submit jobs/generate.py --config conf/transactions.yaml [--set generate.days=30]
    python -m jobs.generate --config conf/<transactions|logs|sensors>.yaml

Writes the raw feed to ``input.path`` as ``event_date=YYYY-MM-DD/`` folders in
``input.format`` (what a landing zone looks like) and the injected labels to the
Delta table ``<dataset>.labels``. Labels never travel with the feed, so no stage can
peek at them. Deterministic by ``generate.seed``; re-running replaces the output.
"""

from __future__ import annotations

import logging
import sys

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehound import io
from lakehound.cli import RunContext, run_job
from lakehound.config import Config
from lakehound.errors import ConfigError
from lakehound.generators import logs, sensors, transactions

log = logging.getLogger("lakehound.generate")


def build(spark: SparkSession, cfg: Config) -> tuple[DataFrame, DataFrame]:
    """(raw feed, labels) for the configured dataset."""
    g = cfg.generate
    if cfg.dataset == "transactions":
        return transactions.generate(spark, g)
    if cfg.dataset == "logs":
        return logs.generate(spark, g)
    if cfg.dataset == "sensors":
        return sensors.generate(spark, g)
    raise ConfigError(
        f"dataset '{cfg.dataset}' has no generator (known: transactions, logs, sensors)"
    )


def write_raw(raw: DataFrame, cfg: Config) -> None:
    fmt = cfg.input.format
    if fmt not in ("csv", "json", "parquet"):
        raise ConfigError(f"input.format '{fmt}' cannot be generated (csv, json or parquet)")
    out = raw.withColumn(io.DATE_COL, F.to_date("event_ts"))
    writer = (
        out.repartition(cfg.generate.files_per_day, io.DATE_COL)
        .write.mode("overwrite")
        .partitionBy(io.DATE_COL)
        .format(fmt)
    )
    if fmt == "csv":
        writer = writer.option("header", "true")
    writer.save(cfg.input.path)


def run(spark: SparkSession, cfg: Config, ctx: RunContext) -> dict[str, int]:
    raw, labels = build(spark, cfg)
    with ctx.stage("write raw feed"):
        write_raw(raw, cfg)
    with ctx.stage("write labels"):
        io.overwrite(labels, cfg, "labels")
    counts = io.read_table(spark, cfg, "labels").groupBy("anomaly_type").count().collect()
    summary = {str(r["anomaly_type"] or "normal"): int(r["count"]) for r in counts}
    log.info("generated %s rows into %s: %s", sum(summary.values()), cfg.input.path, summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    return run_job("generate", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
