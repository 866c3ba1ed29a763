"""The foreachBatch function of the scoring query: one micro-batch from payloads to
``quarantine``, ``scores``, ``alerts`` and ``stream_events`` in Delta, then alert
delivery.

Every Delta write is an insert-only MERGE on the row's key, so a batch Spark replays
after a crash changes nothing it already wrote: exactly once per key together with
the checkpoint. Models are resolved from the registry at every batch, so a newly
promoted version is scored from the next batch on, without a restart.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehound import io, models
from lakehound.cli import RunContext
from lakehound.config import Config
from lakehound.scoring import Member, load_members, score_wide, to_alerts, to_scores
from lakehound.streaming import delivery
from lakehound.streaming.process import (
    STREAM_EVENTS,
    accepted_rows,
    classify_batch,
    features_for,
    summarize,
)
from lakehound.streaming.sinks import merge_insert
from lakehound.validation.rules import REASONS, quarantine_rows
from schemas.base import Contract

log = logging.getLogger("lakehound.stream")


@dataclass
class BatchScorer:
    """Callable for ``foreachBatch``; keeps the loaded models and the last batch's counts."""

    cfg: Config
    contract: Contract
    query_run: str = ""
    versions: tuple[str, ...] = ()
    members: list[Member] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)
    # batch id -> that batch's counts, for the progress rows (the newest few only).
    by_batch: dict[int, dict[str, Any]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    # (batch id, wall-clock start) of the batch in progress, None between batches: a
    # batch that runs far longer than usual shows up while it runs, not only after.
    running: tuple[int, float] | None = None

    def recent_seconds(self, n: int = 20) -> list[float]:
        """Durations of the last ``n`` batches that had rows (what "usual" means for
        :func:`lakehound.streaming.progress.slow_batch`)."""
        return [c["seconds"] for c in self.by_batch.values() if c.get("rows")][-n:]

    def current_members(self, spark: SparkSession) -> list[Member]:
        """The ensemble of the versions in production now; reloaded only on a change."""
        cfg = self.cfg
        versions = tuple(
            models.resolve(spark, cfg, d.id, cfg.scoring.model_version).version
            for d in cfg.scoring.detectors
        )
        if versions != self.versions:
            self.members = load_members(spark, cfg)
            self.versions = tuple(m.model.version for m in self.members)
            log.info("scoring with model versions %s", ",".join(self.versions))
        return self.members

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        self.running = (batch_id, time.time())
        spark = batch.sparkSession
        cfg = self.cfg
        now = dt.datetime.now(dt.UTC)
        ctx = RunContext(job="stream", date=None, run_id=f"stream-{self.query_run}-{batch_id}")
        classified = classify_batch(batch, self.contract, cfg, now).persist(
            StorageLevel.MEMORY_AND_DISK
        )
        try:
            counts = self._process(spark, classified, ctx, now)
        finally:
            classified.unpersist()
            self.running = None
        counts["batch_id"] = batch_id
        counts["seconds"] = round(time.perf_counter() - started, 3)
        counts["model_versions"] = ",".join(self.versions)
        self.last = counts
        self.by_batch[batch_id] = counts
        for old in sorted(self.by_batch)[:-100]:
            del self.by_batch[old]
        for k in ("rows", "quarantined", "scored", "alerts", "dead_lettered"):
            self.totals[k] = self.totals.get(k, 0) + int(counts.get(k, 0))

    def _process(
        self, spark: SparkSession, classified: DataFrame, ctx: RunContext, now: dt.datetime
    ) -> dict[str, Any]:
        cfg = self.cfg
        # Seconds per stage of this batch (kept in stream_progress.details).
        stages: dict[str, float] = {}
        mark = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal mark
            stages[stage] = round(time.perf_counter() - mark, 3)
            mark = time.perf_counter()

        is_bad = F.size(REASONS) > 0
        row = classified.agg(
            F.count("*").alias("rows"),
            F.sum(F.when(is_bad, 1).otherwise(0)).alias("bad"),
            F.collect_set(F.when(is_bad, F.col(io.DATE_COL))).alias("bad_dates"),
        ).first()
        rows, bad = (int(row["rows"]), int(row["bad"] or 0)) if row else (0, 0)
        bad_dates: list[dt.date] = sorted(row["bad_dates"]) if row else []
        counts: dict[str, Any] = {"rows": rows, "quarantined": bad, "scored": 0, "alerts": 0}
        counts["stage_seconds"] = stages
        lap("classify")
        quarantine = (
            quarantine_rows(classified, ctx.run_id, now.replace(tzinfo=None)) if bad else None
        )
        if rows == bad:
            if quarantine is not None:
                merge_insert(quarantine, cfg, "quarantine", dates=bad_dates)
            return counts
        events = accepted_rows(classified, self.contract).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            labels = (
                io.read_table(spark, cfg, "labels")
                if io.table_exists(spark, cfg, "labels")
                else None
            )
            summary = summarize(events)
            feats = features_for(spark, cfg, self.contract, events, labels, summary)
            members = self.current_members(spark)
            wide = score_wide(feats, members, cfg).persist(StorageLevel.MEMORY_AND_DISK)
            try:
                # Features and scores are computed once, here; every write below reads
                # the cached rows.
                counts["scored"] = wide.count()
                alerts = to_alerts(wide, members, cfg, ctx)
                payloads = delivery.alert_payloads(alerts)
                lap("features_and_scores")
                span = summary.event_ts_range
                writes: list[Write] = [
                    Write(to_scores(wide, members, cfg, ctx), "scores", summary.dates, span),
                    # The look-back of later batches. Written alongside the scores: a
                    # replayed batch finds its own events there and features_for drops
                    # them from the history, so the order of the writes does not matter.
                    Write(events, STREAM_EVENTS, summary.dates, span),
                ]
                if payloads:
                    writes.append(Write(alerts, "alerts", summary.dates, span))
                if quarantine is not None:
                    writes.append(Write(quarantine, "quarantine", bad_dates))
                merge_all(writes, cfg)
                lap("writes")
                # Wall clock when this batch's scores and alerts were committed in
                # Delta: the end of the produce-to-Delta latency (bench/streaming.py).
                counts["committed_at"] = time.time()
                counts["alerts"] = len(payloads)
            finally:
                wide.unpersist()
        finally:
            events.unpersist()
        if counts["alerts"] or delivery.has_targets(cfg):
            counts.update(delivery.deliver(spark, cfg, payloads if counts["alerts"] else []))
            lap("delivery")
        return counts


@dataclass(frozen=True)
class Write:
    """One insert-only MERGE of a micro-batch (see :func:`merge_insert`)."""

    df: DataFrame
    table: str
    dates: list[dt.date]
    event_ts_range: tuple[dt.datetime, dt.datetime] | None = None


def merge_all(writes: list[Write], cfg: Config) -> None:
    """MERGE each frame into its table, concurrently.

    Each MERGE is a few small Spark jobs plus a Delta commit, and most of its time is
    spent waiting (planning, log replay, the commit), not computing: running the
    tables' MERGEs side by side cuts a micro-batch's fixed cost. They write different
    tables, so their commits never conflict. Every MERGE is idempotent on its own, so
    a crash between them is repaired by the replayed batch.
    """

    def one(w: Write) -> None:
        merge_insert(w.df, cfg, w.table, dates=w.dates, event_ts_range=w.event_ts_range)

    if len(writes) == 1:
        one(writes[0])
        return
    with ThreadPoolExecutor(max_workers=len(writes), thread_name_prefix="merge") as pool:
        futures = [pool.submit(one, w) for w in writes]
        # Wait for all of them; re-raise the first failure.
        for f in futures:
            f.result()
