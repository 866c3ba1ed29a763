"""Compact and VACUUM every Delta table of a dataset; the Delta ``maintenance`` table.

    spark-submit jobs/maintain.py --config conf/transactions.yaml --date 2024-01-14
    python -m jobs.maintain --config conf/transactions.yaml [--set maintenance.skip=[scores]]
    python -m jobs.maintain --config conf/transactions.yaml --check

``--check`` only reports each table's health (one line per table: ok with its version,
or broken with the problem) and exits 8 if any table is broken; it writes nothing.

For every table under ``<lakehouse>/<dataset>`` (but ``maintenance.skip``): OPTIMIZE
(bin-packing) of the ``--date`` partition of a table partitioned by ``event_date``, of
the whole table otherwise or without ``--date``; then VACUUM of the files no version
of the last ``maintenance.vacuum_retention_hours`` (default 168) references. A
compaction that loses a commit conflict to another writer (the live stream's MERGEs)
is retried up to ``maintenance.conflict_attempts`` times. One row per table and run
date goes to ``maintenance`` (keyed by both: re-running a date replaces its rows).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from dataclasses import dataclass
from functools import partial

from pyspark.sql import SparkSession

from lakehound import io, maintenance
from lakehound.cli import RunContext, run_job
from lakehound.config import Config
from lakehound.errors import StorageError
from lakehound.streaming.sinks import merge_upsert

log = logging.getLogger("lakehound.maintain")

MAINTENANCE = "maintenance"
MAINTENANCE_SCHEMA = (
    "table_name string, run_date date, scope string, files_removed long, files_added long, "
    "bytes_removed long, bytes_added long, vacuumed_files long, retention_hours double, "
    "conflicts int, run_id string, finished_at timestamp"
)


@dataclass(frozen=True)
class Upkeep:
    table: str
    compaction: maintenance.Compaction
    vacuumed: int | None  # None: the log store does not record VACUUM
    conflicts: int  # commit conflicts the compaction lost before it committed


def run(spark: SparkSession, cfg: Config, ctx: RunContext) -> list[Upkeep]:
    settings = cfg.maintenance
    # Before any table is touched: a retention Delta will refuse fails the run at once.
    maintenance.check_retention(spark, settings.vacuum_retention_hours)
    # So does a Delta table whose log has a gap or cannot be replayed: its compaction
    # would commit over the gap. A directory with no log at all (an export, or a lost
    # log) is never compacted; --check reports it.
    broken = [
        h.describe()
        for h in maintenance.check_tables(spark, cfg)
        if h.state == io.BROKEN and h.logged and h.name.split(".", 1)[1] not in settings.skip
    ]
    if broken:
        raise StorageError(broken[0])
    dates = [ctx.date] if ctx.date else None
    listing = settings.vacuum_listing_parallelism or 4 * spark.sparkContext.defaultParallelism
    done: list[Upkeep] = []
    for table in maintenance.dataset_tables(spark, cfg):
        if table in settings.skip:
            log.info("%s: skipped (maintenance.skip)", table)
            continue
        path = io.table_path(cfg, table)
        with ctx.stage(table):
            compaction, conflicts = io.retry_on_conflict(
                partial(maintenance.compact, spark, path, dates),
                f"OPTIMIZE of {table}",
                settings.conflict_attempts,
            )
            vacuumed = maintenance.vacuum(spark, path, settings.vacuum_retention_hours, listing)
        log.info(
            "%s (%s): %d files compacted into %d, %s files vacuumed",
            table, compaction.scope, compaction.files_removed, compaction.files_added, vacuumed,
        )  # fmt: skip
        done.append(Upkeep(table, compaction, vacuumed, conflicts))
    if done:
        _record(spark, cfg, ctx, done)
    return done


def _record(spark: SparkSession, cfg: Config, ctx: RunContext, done: list[Upkeep]) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    hours = float(cfg.maintenance.vacuum_retention_hours)
    rows = [
        (
            u.table, ctx.date, u.compaction.scope, u.compaction.files_removed,
            u.compaction.files_added, u.compaction.bytes_removed, u.compaction.bytes_added,
            u.vacuumed, hours, u.conflicts, ctx.run_id, now,
        )
        for u in done
    ]  # fmt: skip
    df = spark.createDataFrame(rows, MAINTENANCE_SCHEMA)
    merge_upsert(df, cfg, MAINTENANCE, ("table_name", "run_date"))


def check(spark: SparkSession, cfg: Config, ctx: RunContext) -> list[io.TableHealth]:
    """Print every table's health; StorageError (exit 8) if any is broken."""
    report = maintenance.check_tables(spark, cfg)
    for h in report:
        what = f"version {h.version}" if h.state == io.OK else h.problem or "no table"
        print(f"{h.state:6s} {h.name} {h.path}: {what}", flush=True)
    broken = [h.name for h in report if h.state == io.BROKEN]
    if broken:
        raise StorageError(f"{len(broken)} of {len(report)} tables broken: {', '.join(broken)}")
    return report


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--check" in args:
        args.remove("--check")
        return run_job("maintain", __doc__, check, args)
    return run_job("maintain", __doc__, run, args)


if __name__ == "__main__":
    sys.exit(main())
