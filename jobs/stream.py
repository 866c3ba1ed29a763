"""Live scoring: score events from Kafka or a landing folder into Delta as they arrive.

    spark-submit jobs/stream.py --config conf/transactions.yaml [--set stream.source=kafka ...]
    python -m jobs.stream --config conf/transactions.yaml --set stream.topic=transactions \\
        [--available-now] [--timeout SECONDS]

Two queries share the source. ``score`` (foreachBatch): contract -> ``quarantine`` ->
features over the batch plus its look-back -> production models -> MERGE into
``scores``, ``alerts`` and ``stream_events`` -> webhook / Kafka alert delivery.
``entity_windows``: the per-entity event-time window aggregate with a watermark;
events behind the watermark are counted as late. Progress (rate, offsets behind,
batch duration, late events) is printed and kept in ``stream_progress``.

``--available-now`` processes what is there and exits (tests, backfills);
``--timeout`` stops the queries after that many seconds. A failed query is restarted
from its checkpoint, up to ``stream.max_restarts`` times in a row without a completed
trigger in between.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehound import io
from lakehound.cli import RunContext, run_job
from lakehound.config import Config
from lakehound.errors import LakeHoundError
from lakehound.streaming import progress
from lakehound.streaming.batch import BatchScorer
from lakehound.streaming.sinks import merge_upsert
from lakehound.streaming.sources import read_source
from lakehound.streaming.state import ENTITY_WINDOWS, valid_events, windowed_aggregate
from schemas.base import Contract
from schemas.registry import get_contract

log = logging.getLogger("lakehound.stream")


class StreamFailed(LakeHoundError):
    """A streaming query failed more than ``stream.max_restarts`` times in a row."""


def checkpoint_root(cfg: Config) -> str:
    if cfg.stream.checkpoint_dir:
        return str(Path(cfg.stream.checkpoint_dir).resolve())
    return f"{io.table_path(cfg, '_checkpoints')}/stream"


def _trigger(writer: Any, interval: str, available_now: bool) -> Any:
    if available_now:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=interval)


def start_scoring(
    spark: SparkSession, cfg: Config, contract: Contract, scorer: BatchScorer, available_now: bool
) -> StreamingQuery:
    source = read_source(spark, cfg, contract)
    writer = (
        source.writeStream.queryName("score")
        .foreachBatch(scorer)
        .option("checkpointLocation", f"{checkpoint_root(cfg)}/score")
    )
    return _trigger(writer, cfg.stream.trigger_interval, available_now).start()


def start_windows(
    spark: SparkSession, cfg: Config, contract: Contract, ctx: RunContext, available_now: bool
) -> StreamingQuery:
    events = valid_events(read_source(spark, cfg, contract), contract, cfg, ctx.started_at)

    def upsert(df: DataFrame, _batch_id: int) -> None:
        # The update output mode re-emits a window's new totals: overwrite by key. Only
        # windows from the batch's earliest one on can match, so the MERGE is bounded
        # there and reads the files of recent windows, not the table's whole history
        # (which grows for as long as the stream runs). Cached: read twice.
        df = df.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            first = df.agg(F.min("window_start")).first()
            if first is None or first[0] is None:
                return  # a trigger that only advanced the watermark: nothing to write
            merge_upsert(df, cfg, ENTITY_WINDOWS, ("entity_id", "window_start"),
                         since=("window_start", first[0]))  # fmt: skip
        finally:
            df.unpersist()

    writer = (
        windowed_aggregate(events, contract, cfg)
        .writeStream.queryName(ENTITY_WINDOWS)
        .outputMode("update")
        .foreachBatch(upsert)
        .option("checkpointLocation", f"{checkpoint_root(cfg)}/{ENTITY_WINDOWS}")
    )
    return _trigger(writer, cfg.stream.windows_trigger_interval, available_now).start()


def _report(
    spark: SparkSession,
    cfg: Config,
    queries: dict[str, StreamingQuery],
    scorer: BatchScorer,
    seen: set[tuple[str, str, int]],
    slow_said: dict[int, float],
) -> set[str]:
    """Print and record the triggers completed since the last call; returns the names
    of the queries that completed one. A slow batch in progress gets a line when it
    turns slow and then one a minute (``slow_said``: batch id -> its last line)."""
    rows = []
    progressed = set()
    for name, q in queries.items():
        for p in q.recentProgress:
            key = (name, str(p.get("runId")), int(p["batchId"]))
            if key in seen:
                continue
            seen.add(key)
            progressed.add(name)
            extra = scorer.by_batch.get(int(p["batchId"]), {}) if name == "score" else {}
            row = progress.to_row(name, p, extra)
            rows.append(row)
            print(progress.describe(row), flush=True)
    now = time.time()
    slow = progress.slow_batch(scorer.running, scorer.recent_seconds(), now)
    if slow and scorer.running is not None:
        batch_id = scorer.running[0]
        if now - slow_said.get(batch_id, 0.0) >= progress.SLOW_BATCH_SECONDS:
            slow_said[batch_id] = now
            print(slow, flush=True)
    progress.record(spark, cfg, rows)
    return progressed


def _stop_all(queries: dict[str, StreamingQuery]) -> None:
    """Stop the active queries. Runs in a ``finally``: when the driver JVM has died (an
    OutOfMemoryError stops the SparkContext) stopping fails too, and raising that would
    hide the error that ended the run, so it is logged instead."""
    for name, q in queries.items():
        try:
            if q.isActive:
                q.stop()
        except Exception as exc:  # cleanup: the error that ended the run is the one to see
            log.warning("could not stop query %s: %s", name, progress.failure_reason(str(exc)))


def run(
    spark: SparkSession, cfg: Config, ctx: RunContext, *, available_now: bool = False,
    timeout: float | None = None, scorer: BatchScorer | None = None,
    stop: threading.Event | None = None,
) -> dict[str, int]:  # fmt: skip
    """Run both queries until they end (``available_now``), time out, SIGTERM or
    ``stop`` is set. ``scorer`` and ``stop`` let a caller that runs this in a thread
    (the benchmark) read the per-batch counts and end the run when it has seen enough."""
    contract = get_contract(cfg.validation.contract)
    scorer = scorer or BatchScorer(cfg, contract, query_run=ctx.run_id)
    starters = {
        "score": lambda: start_scoring(spark, cfg, contract, scorer, available_now),
        ENTITY_WINDOWS: lambda: start_windows(spark, cfg, contract, ctx, available_now),
    }
    queries = {name: start() for name, start in starters.items()}
    stopping = {"flag": False}

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping the queries after the current batch", signum)
        stopping["flag"] = True

    # Signal handlers can only be set from the main thread (the benchmark runs this in another).
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop) if main_thread else None
    seen: set[tuple[str, str, int]] = set()
    slow_said: dict[int, float] = {}
    restarts = progress.Restarts(cfg.stream.max_restarts)
    deadline = time.monotonic() + timeout if timeout else None
    try:
        while True:
            for q in queries.values():
                # A failure is handled below: restart from the checkpoint, or the job fails.
                with contextlib.suppress(StreamingQueryException):
                    q.awaitTermination(max(1, int(cfg.stream.progress_seconds / len(queries))))
            for name in _report(spark, cfg, queries, scorer, seen, slow_said):
                restarts.progressed(name)
            for name, q in list(queries.items()):
                if q.isActive or q.exception() is None:
                    continue
                reason = progress.failure_reason(str(q.exception()))
                if not restarts.may_restart(name):
                    raise StreamFailed(
                        f"query {name} failed {restarts.failures[name]} times in a row without "
                        f"completing a trigger (stream.max_restarts={restarts.limit}): {reason}"
                    )
                log.warning("query %s failed (%s); restart %d of %d from its checkpoint", name,
                            reason, restarts.failures[name], restarts.limit)  # fmt: skip
                queries[name] = starters[name]()
            if not any(q.isActive for q in queries.values()):
                break
            expired = deadline is not None and time.monotonic() > deadline
            if stopping["flag"] or expired or (stop is not None and stop.is_set()):
                break
    finally:
        _stop_all(queries)
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    _report(spark, cfg, queries, scorer, seen, slow_said)
    print(f"LakeHound stream summary ({cfg.dataset}): {scorer.totals}", flush=True)
    return scorer.totals


def main(argv: list[str] | None = None) -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--available-now", action="store_true")
    extra.add_argument("--timeout", type=float)
    opts, rest = extra.parse_known_args(sys.argv[1:] if argv is None else argv)
    job = functools.partial(run, available_now=opts.available_now, timeout=opts.timeout)
    return run_job("stream", __doc__, job, rest)


if __name__ == "__main__":
    sys.exit(main())
