"""Idempotent Delta writes for foreachBatch: MERGE on the event key, insert-only.

A micro-batch that is replayed after a crash (Spark re-runs the last planned batch
from the checkpoint) produces the same keys, which MERGE finds and skips: together
with the checkpoint this is exactly once per key in every table written here. For the
same reason a MERGE that loses a commit conflict (the nightly compaction of
jobs/maintain.py, another writer) is simply run again instead of failing the query.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehound import io
from lakehound.config import Config

# Table -> the columns identifying one row (the MERGE condition).
KEYS: dict[str, tuple[str, ...]] = {
    "scores": ("event_id", "detector"),
    "alerts": ("event_id",),
    "stream_events": ("transaction_id",),
    # Kafka sources are unique per message; a landing file + line text otherwise.
    "quarantine": ("source_file", "raw_record"),
    "entity_windows": ("entity_id", "window_start"),
    "dead_letters": ("event_id", "target"),
}
PARTITIONED = {"scores", "alerts", "stream_events", "quarantine"}
# Attempts of one MERGE that keeps losing commit conflicts before the batch fails.
CONFLICT_ATTEMPTS = 3


def merge_insert(
    df: DataFrame,
    cfg: Config,
    table: str,
    keys: Sequence[str] | None = None,
    dates: Sequence[dt.date] | None = None,
    event_ts_range: tuple[dt.datetime, dt.datetime] | None = None,
) -> None:
    """Insert the rows of ``df`` whose key is not in ``table`` yet (create it if new).

    ``dates``: the ``event_date`` values of ``df`` if the caller knows them (saves a
    Spark job); they bound the partitions a partitioned table's MERGE scans.
    ``event_ts_range``: the earliest and latest ``event_ts`` of ``df``. Only target
    rows in that range are matched, so Delta skips every file written for other
    times (its min/max statistics) and a MERGE costs the batch, not the whole day's
    partition. A copy of an event re-sent later carries the same event time, so it
    is still found; an id re-used with another event time counts as another event.
    """
    spark = df.sparkSession
    keys = list(keys or KEYS[table])
    # Two source rows with one new key would both be inserted: keep one.
    df = df.dropDuplicates(keys)
    path = io.table_path(cfg, table)
    if not io.table_exists(spark, cfg, table):
        writer = df.write.format("delta").mode("append")
        if table in PARTITIONED:
            writer = writer.partitionBy(io.DATE_COL)
        writer.save(path)
        io.register(spark, cfg, table)
        return
    cond = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    if table in PARTITIONED:
        # Pruning: only the partitions the batch touches are scanned for matches.
        if dates is None:
            dates = [r[0] for r in df.select(io.DATE_COL).distinct().collect()]
        if not dates:
            return
        cond = f"{io.date_predicate(dates, 't.' + io.DATE_COL)} AND {cond}"
    condition = F.expr(cond)
    if event_ts_range is not None:
        lo, hi = event_ts_range
        condition = F.col("t.event_ts").between(F.lit(lo), F.lit(hi)) & condition
    _merge(df, path, condition, table, update=False)


def merge_upsert(
    df: DataFrame,
    cfg: Config,
    table: str,
    keys: Sequence[str],
    since: tuple[str, object] | None = None,
) -> None:
    """Insert new keys and overwrite existing ones (for state that is recomputed).

    ``since`` = (column, value): every row of ``df`` has ``column >= value`` and the
    column is one of the keys, so no target row below it can match. Said in the MERGE
    condition, it lets Delta skip the files holding only older rows (min/max
    statistics): the MERGE reads the recent part of the table, not all of it.
    """
    spark = df.sparkSession
    path = io.table_path(cfg, table)
    if not io.table_exists(spark, cfg, table):
        df.write.format("delta").mode("append").save(path)
        io.register(spark, cfg, table)
        return
    condition = F.expr(" AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys))
    if since is not None:
        column, value = since
        if column not in keys:
            raise ValueError(f"since column {column!r} is not one of the keys {list(keys)}")
        condition = (F.col(f"t.`{column}`") >= F.lit(value)) & condition
    _merge(df, path, condition, table, update=True)


def _merge(df: DataFrame, path: str, condition: Column, table: str, *, update: bool) -> None:
    """MERGE ``df`` into the Delta table at ``path``: insert the unmatched rows, and with
    ``update`` overwrite the matched ones; re-run if it loses a commit conflict."""
    from delta.tables import DeltaTable

    def attempt() -> None:
        # Built anew per attempt: a retry plans against the table's newest version.
        merge = DeltaTable.forPath(df.sparkSession, path).alias("t").merge(df.alias("s"), condition)
        if update:
            merge = merge.whenMatchedUpdateAll()
        merge.whenNotMatchedInsertAll().execute()

    io.retry_on_conflict(attempt, f"MERGE into {table}", CONFLICT_ATTEMPTS)
