"""Idempotent Delta writes for foreachBatch: MERGE on the event key, insert-only.

A micro-batch that is replayed after a crash (Spark re-runs the last planned batch
from the checkpoint) produces the same keys, which MERGE finds and skips: together
with the checkpoint this is exactly once per key in every table written here.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame

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


def merge_insert(df: DataFrame, cfg: Config, table: str, keys: Sequence[str] | None = None) -> None:
    """Insert the rows of ``df`` whose key is not in ``table`` yet (create it if new)."""
    from delta.tables import DeltaTable

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
        dates = [r[0] for r in df.select(io.DATE_COL).distinct().collect()]
        if not dates:
            return
        cond = f"{io.date_predicate(dates, 't.' + io.DATE_COL)} AND {cond}"
    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(df.alias("s"), cond)
        .whenNotMatchedInsertAll()
        .execute()
    )


def merge_upsert(df: DataFrame, cfg: Config, table: str, keys: Sequence[str]) -> None:
    """Insert new keys and overwrite existing ones (for state that is recomputed)."""
    from delta.tables import DeltaTable

    spark = df.sparkSession
    path = io.table_path(cfg, table)
    if not io.table_exists(spark, cfg, table):
        df.write.format("delta").mode("append").save(path)
        io.register(spark, cfg, table)
        return
    cond = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(df.alias("s"), cond)
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )
