"""All reads and writes of LakeHound go through here.

Table convention: every table lives at ``<lakehouse>/<dataset>/<table>`` and is
registered in the catalog as ``<dataset>.<table>``. Writes of date-partitioned
tables replace exactly the dates of the run (Delta ``replaceWhere``), so re-running
a date never duplicates output and never touches other dates.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from lakehound.config import Config, InputSettings
from lakehound.errors import InputError

DATE_COL = "event_date"
T = TypeVar("T")
log = logging.getLogger("lakehound.io")


def table_path(cfg: Config, table: str) -> str:
    base = cfg.lakehouse
    if "://" not in base:
        base = str(Path(base).resolve())
    return f"{base}/{cfg.dataset}/{table}"


def table_name(cfg: Config, table: str) -> str:
    return f"{cfg.dataset}.{table}"


def table_exists(spark: SparkSession, cfg: Config, table: str) -> bool:
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, table_path(cfg, table)))


def read_table(spark: SparkSession, cfg: Config, table: str) -> DataFrame:
    path = table_path(cfg, table)
    if not table_exists(spark, cfg, table):
        raise InputError(f"Delta table {table_name(cfg, table)} not found at {path}")
    return spark.read.format("delta").load(path)


def event_labels(spark: SparkSession, cfg: Config) -> DataFrame | None:
    """The ``labels`` table keyed by event: ``event_id``, ``is_anomaly`` and the table's
    other columns (``anomaly_type``, ``event_date`` where present).

    None without a labels table, or when it is not keyed by event: the logs and sensor
    generators label intervals per host or machine, which match no single event id.
    """
    if not table_exists(spark, cfg, "labels"):
        return None
    labels = read_table(spark, cfg, "labels")
    key = next((k for k in ("event_id", "transaction_id") if k in labels.columns), None)
    if key is None or "is_anomaly" not in labels.columns:
        return None
    return labels.withColumnRenamed(key, "event_id")


def register(spark: SparkSession, cfg: Config, table: str) -> None:
    """Register ``<dataset>.<table>`` in the session catalog, pointing at its path."""
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{cfg.dataset}`")
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS `{cfg.dataset}`.`{table}` USING DELTA "
        f"LOCATION '{table_path(cfg, table)}'"
    )


def date_predicate(dates: Sequence[dt.date], column: str = DATE_COL) -> str:
    if not dates:
        raise ValueError("date_predicate needs at least one date")
    listed = ", ".join(f"DATE'{d.isoformat()}'" for d in sorted(set(dates)))
    return f"{column} IN ({listed})"


# Attempts of one date replacement that keeps losing commit conflicts.
REPLACE_ATTEMPTS = 3


def replace_dates(
    df: DataFrame,
    cfg: Config,
    table: str,
    dates: Sequence[dt.date],
    *,
    partition_col: str = DATE_COL,
) -> None:
    """Atomically replace the given dates of a date-partitioned Delta table with ``df``.

    Rows of ``df`` outside ``dates`` are a bug in the caller; Delta's replaceWhere
    constraint check rejects them rather than silently writing them. A replacement
    that loses a commit conflict (the live stream's MERGE or the nightly compaction
    committed to one of the dates meanwhile) is run again on the table's new version:
    it replaces the dates whatever they hold, so the outcome is the one a run started
    after the other commit would have had (``df`` is recomputed unless it is cached).
    """
    spark = df.sparkSession

    def attempt() -> None:
        (
            df.write.format("delta")
            .mode("overwrite")
            .partitionBy(partition_col)
            .option("replaceWhere", date_predicate(dates, partition_col))
            .save(table_path(cfg, table))
        )

    retry_on_conflict(attempt, f"replaceWhere into {table}", REPLACE_ATTEMPTS)
    register(spark, cfg, table)


def overwrite(df: DataFrame, cfg: Config, table: str) -> None:
    df.write.format("delta").mode("overwrite").save(table_path(cfg, table))
    register(df.sparkSession, cfg, table)


def append(df: DataFrame, cfg: Config, table: str) -> None:
    df.write.format("delta").mode("append").save(table_path(cfg, table))
    register(df.sparkSession, cfg, table)


def conflicts() -> tuple[type[Exception], ...]:
    """Delta's commit conflicts: another writer committed first, and the operation can
    run again on the table's new version (Delta's concurrency-control docs advise a
    retry). Data conflicts only: a schema or protocol change is not retried. The
    classes share no base in delta-spark 3.x, hence the tuple."""
    from delta import exceptions as e

    return (
        e.ConcurrentAppendException,
        e.ConcurrentDeleteReadException,
        e.ConcurrentDeleteDeleteException,
        e.ConcurrentWriteException,
    )


def retry_on_conflict(
    op: Callable[[], T], what: str, attempts: int = 3, backoff_seconds: float = 1.0
) -> tuple[T, int]:
    """Run a Delta commit ``op``; on a commit conflict run it again, up to ``attempts``
    times in all, waiting ``backoff_seconds`` doubled each time. Returns (its result,
    the conflicts met). Only for an ``op`` that is idempotent: re-running it on the new
    version must give the same table (an insert-only or upsert MERGE on a key, a
    compaction, a replacement of whole dates). The last conflict is raised as it is."""
    lost = 0
    while True:
        try:
            return op(), lost
        except conflicts() as exc:
            lost += 1
            if lost >= attempts:
                raise
            wait = backoff_seconds * 2 ** (lost - 1)
            first = str(exc).split("\n", 1)[0]
            log.warning("%s lost a commit conflict (%s); retrying in %.1fs", what, first, wait)
            time.sleep(wait)


def input_paths(settings: InputSettings, dates: Sequence[dt.date] | None) -> list[str]:
    """The files a run reads: one partition directory per date, or the whole path."""
    if not settings.path:
        raise InputError("input.path is empty; set it in the dataset config or with --set")
    if "://" in settings.path:
        base = settings.path
        if dates and settings.partitioned_by_date:
            return [f"{base}/{DATE_COL}={d.isoformat()}" for d in dates]
        return [base]
    root = Path(settings.path)
    if not root.exists():
        raise InputError(f"input path does not exist: {root}")
    if dates and settings.partitioned_by_date:
        paths = [root / f"{DATE_COL}={d.isoformat()}" for d in dates]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise InputError(f"no input partition for the run date: {missing[0]}")
        return [str(p) for p in paths]
    return [str(root)]


def read_input(
    spark: SparkSession,
    settings: InputSettings,
    schema: StructType,
    dates: Sequence[dt.date] | None = None,
) -> DataFrame:
    """Read raw input with the contract's schema; never ``inferSchema``."""
    paths = input_paths(settings, dates)
    reader = spark.read.options(**settings.options)
    if settings.partitioned_by_date:
        # The date directories are a storage layout, not data: the event date is
        # derived from the event timestamp, so no partition column is inferred.
        reader = reader.option("recursiveFileLookup", "true")
    if settings.format == "delta":
        return reader.format("delta").load(paths[0])
    if settings.format in ("csv", "json"):
        reader = reader.schema(schema)
        if settings.format == "csv":
            reader = reader.option("header", settings.options.get("header", "true"))
        return reader.format(settings.format).load(paths)
    if settings.format == "text":
        return reader.format("text").load(paths)
    return reader.schema(schema).format("parquet").load(paths)
