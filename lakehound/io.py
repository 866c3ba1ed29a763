"""All reads and writes of LakeHound go through here.

Table convention: every table lives at ``<lakehouse>/<dataset>/<table>`` and is
registered in the catalog as ``<dataset>.<table>``. Writes of date-partitioned
tables replace exactly the dates of the run (Delta ``replaceWhere``), so re-running
a date never duplicates output and never touches other dates.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from lakehound.config import Config, InputSettings
from lakehound.errors import InputError, StorageError

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
    """True for a Delta table, False for no table at all; a broken table (data files
    without a continuous Delta log) raises :class:`StorageError` instead of looking
    absent, so no caller ever creates a new table over its files."""
    from delta.tables import DeltaTable

    path = table_path(cfg, table)
    health = table_health(spark, path, table_name(cfg, table), read=False)
    if health.state == BROKEN:
        raise StorageError(health.describe())
    return health.state == OK and bool(DeltaTable.isDeltaTable(spark, path))


OK, ABSENT, BROKEN = "ok", "absent", "broken"
LOG_DIR = "_delta_log"
_COMMIT = re.compile(r"^(\d{20})\.json$")
_CRC = re.compile(r"^(\d{20})\.crc$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(\..+)?\.(parquet|json)$")


@dataclass(frozen=True)
class TableHealth:
    """What a table directory holds: a readable Delta table, nothing, or a broken one."""

    name: str
    path: str
    state: str  # OK, ABSENT or BROKEN
    problem: str = ""
    version: int = -1  # the latest version of a healthy table
    logged: bool = False  # the directory has Delta log entries (even if broken)

    def describe(self) -> str:
        if self.state == BROKEN:
            return (
                f"table {self.name} at {self.path}: {self.problem}; refusing to write "
                "(see README, Reliability: recovering a table)"
            )
        if self.state == ABSENT:
            return f"table {self.name} at {self.path}: absent"
        return f"table {self.name} at {self.path}: ok, version {self.version}"


def _hadoop_fs(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    assert jvm is not None  # a live session always has a gateway
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath


def _has_data_files(fs: Any, hpath: Any) -> bool:
    """Any file outside hidden (``_``/``.``) directories: what Delta stores rows in."""
    it = fs.listFiles(hpath, True)
    prefix = str(hpath.toUri().getPath()).rstrip("/")
    while it.hasNext():
        full = str(it.next().getPath().toUri().getPath())
        rel = full[len(prefix) :].strip("/").split("/") if full.startswith(prefix) else [full]
        if not any(part.startswith(("_", ".")) for part in rel):
            return True
    return False


def table_health(spark: SparkSession, path: str, name: str, *, read: bool = True) -> TableHealth:
    """Check a table directory before anything is written to it.

    Broken: data files without a ``_delta_log`` holding commits (the log was deleted,
    or a first write was killed before it committed), or a gap in the log's versions
    (a deleted entry after the latest checkpoint: Delta would silently take the
    version before the gap as the latest and a write would commit over the gap), or,
    with ``read``, a log Delta cannot replay (a corrupt entry). Listing only the log
    is cheap; ``read`` also loads the snapshot.
    """
    fs, hpath = _hadoop_fs(spark, path)
    if not fs.exists(hpath):
        return TableHealth(name, path, ABSENT)
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    log_dir = jvm.org.apache.hadoop.fs.Path(hpath, LOG_DIR)
    commits: set[int] = set()
    others: set[int] = set()
    checkpoints: set[int] = set()
    if fs.exists(log_dir):
        for status in fs.listStatus(log_dir):
            fname = str(status.getPath().getName())
            if m := _COMMIT.match(fname):
                commits.add(int(m.group(1)))
            elif m := _CHECKPOINT.match(fname):
                checkpoints.add(int(m.group(1)))
            elif m := _CRC.match(fname):
                others.add(int(m.group(1)))
    if not commits and not checkpoints and not others:
        if not _has_data_files(fs, hpath):
            return TableHealth(name, path, ABSENT)
        what = "has no commit" if fs.exists(log_dir) else "is missing"
        return TableHealth(name, path, BROKEN, f"data files but the Delta log ({LOG_DIR}) {what}")
    # Entries before the latest checkpoint may be cleaned up by Delta's log retention;
    # every later version must have its commit file.
    start = max(checkpoints) + 1 if checkpoints else 0
    latest = max(commits | others | checkpoints)
    missing = [v for v in range(start, latest + 1) if v not in commits]
    if missing:
        listed = ", ".join(str(v) for v in missing[:5]) + (" ..." if len(missing) > 5 else "")
        return TableHealth(
            name, path, BROKEN,
            f"Delta log entries missing for version(s) {listed} of 0..{latest} "
            f"({LOG_DIR}/{missing[0]:020d}.json)", logged=True,
        )  # fmt: skip
    if read:
        from delta.tables import DeltaTable

        try:
            row = DeltaTable.forPath(spark, path).history(1).select("version").first()
            spark.read.format("delta").load(path).schema  # noqa: B018 (replays the log)
        except Exception as exc:  # Py4J and Spark analysis errors alike: report, not raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return TableHealth(
                name, path, BROKEN, f"Delta log unreadable ({first[:300]})", logged=True
            )
        version = int(row[0]) if row is not None else -1
        return TableHealth(name, path, OK, version=version, logged=True)
    return TableHealth(name, path, OK, version=latest, logged=True)


def ensure_writable(spark: SparkSession, cfg: Config, table: str) -> None:
    """Refuse (:class:`StorageError`, exit 8) to write to a broken table."""
    health = table_health(spark, table_path(cfg, table), table_name(cfg, table))
    if health.state == BROKEN:
        raise StorageError(health.describe())


def check_lakehouse_writable(cfg: Config) -> None:
    """Fail at start-up, before any work, when the lakehouse cannot be written.

    Creates ``<lakehouse>/<dataset>`` and a probe file in it. Only for a local
    lakehouse: object stores are checked by their first write.
    """
    if "://" in cfg.lakehouse:
        return
    root = Path(table_path(cfg, "x")).parent
    probe = root / f".lakehound-write-probe-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StorageError(
            f"lakehouse {root} is not writable ({exc.strerror or type(exc).__name__}: "
            f"{exc.filename or root}); set lakehouse= to a writable directory"
        ) from None


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
    ensure_writable(spark, cfg, table)

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
    ensure_writable(df.sparkSession, cfg, table)
    df.write.format("delta").mode("overwrite").save(table_path(cfg, table))
    register(df.sparkSession, cfg, table)


def append(df: DataFrame, cfg: Config, table: str) -> None:
    ensure_writable(df.sparkSession, cfg, table)
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
