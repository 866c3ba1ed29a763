"""Table upkeep: compact small files (Delta OPTIMIZE) and delete unreferenced ones (VACUUM).

Every nightly replaceWhere and every micro-batch of the live stream adds files: a
stream that commits every 30 s leaves thousands of small files per table and day,
and every rewrite leaves files no current version references. Reads slow down
(one task and one footer per file) and storage grows. OPTIMIZE bin-packs a
partition's small files into few large ones and VACUUM deletes the files older
versions needed; neither changes a row. Compaction commits with ``dataChange=false``,
so streams reading the table do not see its files as new data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehound import io
from lakehound.config import Config
from lakehound.errors import ConfigError

if TYPE_CHECKING:
    from delta.tables import DeltaTable

# Delta's default delta.deletedFileRetentionDuration, the least VACUUM accepts while
# its retention check is on.
DELTA_MIN_RETENTION_HOURS = 168.0
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"


@dataclass(frozen=True)
class Compaction:
    """What OPTIMIZE did to one table (Delta's own metrics)."""

    scope: str  # the partitions compacted: a date predicate, or "all"
    files_removed: int
    files_added: int
    bytes_removed: int
    bytes_added: int


def dataset_tables(spark: SparkSession, cfg: Config) -> list[str]:
    """The Delta tables under ``<lakehouse>/<dataset>``, by name, sorted.

    Listed through Hadoop's FileSystem so a lakehouse on S3, ABFS or HDFS is found as
    a local one is; directories starting with ``_`` (stream checkpoints) are not tables.
    """
    from delta.tables import DeltaTable

    root = io.table_path(cfg, "").rstrip("/")
    return [n for n in table_dirs(spark, cfg) if DeltaTable.isDeltaTable(spark, f"{root}/{n}")]


def table_dirs(spark: SparkSession, cfg: Config) -> list[str]:
    """Every table directory under ``<lakehouse>/<dataset>``, healthy or not, sorted."""
    root = io.table_path(cfg, "").rstrip("/")
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    hpath = jvm.org.apache.hadoop.fs.Path(root)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(hpath):
        return []
    names = [str(s.getPath().getName()) for s in fs.listStatus(hpath) if s.isDirectory()]
    return sorted(n for n in names if not n.startswith(("_", ".")))


def check_tables(spark: SparkSession, cfg: Config) -> list[io.TableHealth]:
    """The health of every table directory of the dataset (listing and log replay)."""
    return [
        io.table_health(spark, io.table_path(cfg, t), io.table_name(cfg, t))
        for t in table_dirs(spark, cfg)
    ]


def partition_columns(spark: SparkSession, path: str) -> list[str]:
    from delta.tables import DeltaTable

    row = DeltaTable.forPath(spark, path).detail().select("partitionColumns").first()
    return list(row[0]) if row is not None else []


def compact(spark: SparkSession, path: str, dates: Sequence[dt.date] | None = None) -> Compaction:
    """OPTIMIZE (bin-packing) of a table: of the ``dates`` partitions if the table is
    partitioned by ``event_date`` and dates are given, of the whole table otherwise.

    A nightly run compacts the day it closes: the live stream's MERGEs go on writing
    today's partition and read only its files, so compacting yesterday does not
    conflict with them. An unpartitioned table is compacted whole; OPTIMIZE leaves a
    file alone once it is large, so a compacted table costs little the next night.
    """
    from delta.tables import DeltaTable

    builder = DeltaTable.forPath(spark, path).optimize()
    scope = "all"
    if dates and io.DATE_COL in partition_columns(spark, path):
        scope = io.date_predicate(dates)
        builder = builder.where(scope)
    m = builder.executeCompaction().select("metrics.*").first()
    assert m is not None  # OPTIMIZE returns one row of metrics
    return Compaction(
        scope=scope,
        files_removed=int(m["numFilesRemoved"]),
        files_added=int(m["numFilesAdded"]),
        bytes_removed=int(m["filesRemoved"]["totalSize"]),
        bytes_added=int(m["filesAdded"]["totalSize"]),
    )


def check_retention(spark: SparkSession, retention_hours: float) -> None:
    """Fail before any table is touched if VACUUM would refuse the retention."""
    check = str(spark.conf.get(RETENTION_CHECK, "true")).lower() == "true"
    if check and retention_hours < DELTA_MIN_RETENTION_HOURS:
        raise ConfigError(
            f"maintenance.vacuum_retention_hours={retention_hours} is below Delta's "
            f"{DELTA_MIN_RETENTION_HOURS:g} hours while {RETENTION_CHECK} is on: older "
            "versions still read by a stream or a query would lose their files"
        )


def vacuum(
    spark: SparkSession, path: str, retention_hours: float, listing_parallelism: int
) -> int | None:
    """VACUUM a table; returns the files it deleted (Delta's ``VACUUM END`` metric),
    None where the log store does not record VACUUM.

    VACUUM lists the table's directories in ``parallelPartitionDiscovery.parallelism``
    Spark tasks, 10,000 by default: sized for a cluster, minutes of empty tasks on two
    cores for a small table (measured 114 s against 3 s with 4). It is set for the
    call only, as the setting is session-wide and partition discovery uses it too.
    Delta's refusal of a retention below the table's ``deletedFileRetentionDuration``
    becomes a :class:`ConfigError` naming the config key.
    """
    from delta.tables import DeltaTable
    from pyspark.errors import IllegalArgumentException

    table = DeltaTable.forPath(spark, path)
    version = _version(table)
    previous = spark.conf.get(LISTING_PARALLELISM, None)
    spark.conf.set(LISTING_PARALLELISM, str(listing_parallelism))
    try:
        table.vacuum(retention_hours)
    except IllegalArgumentException as exc:
        raise ConfigError(
            f"maintenance.vacuum_retention_hours={retention_hours}: Delta refuses it for "
            f"{path} ({str(exc).splitlines()[0]})"
        ) from None
    finally:
        if previous is None:
            spark.conf.unset(LISTING_PARALLELISM)
        else:
            spark.conf.set(LISTING_PARALLELISM, previous)
    # This VACUUM's END commit: the newest after the version it started from (another
    # writer may have committed in between).
    ends = (
        table.history(20)
        .where((F.col("version") > version) & (F.col("operation") == "VACUUM END"))
        .orderBy(F.col("version").desc())
        .select(F.col("operationMetrics")["numDeletedFiles"].alias("n"))
        .first()
    )
    return None if ends is None or ends["n"] is None else int(ends["n"])


def _version(table: DeltaTable) -> int:
    row = table.history(1).select("version").first()
    assert row is not None  # a Delta table has at least version 0
    return int(row[0])
