"""What the running queries report: one line per micro-batch on stdout and one row in
the ``stream_progress`` Delta table (rate, offsets behind, batch duration, late
events dropped by the watermark, and the scoring batch's own counts)."""

from __future__ import annotations

import datetime as dt
import json
import re
import statistics
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql.types import (
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehound.config import Config
from lakehound.streaming.sinks import merge_upsert

STREAM_PROGRESS = "stream_progress"
SCHEMA = StructType(
    [
        StructField("query", StringType(), False),
        StructField("run_id", StringType(), False),
        StructField("batch_id", LongType(), False),
        StructField("timestamp", TimestampType(), False),
        StructField("input_rows", LongType()),
        StructField("input_rows_per_second", DoubleType()),
        StructField("processed_rows_per_second", DoubleType()),
        StructField("batch_duration_ms", LongType()),
        StructField("offsets_behind", LongType()),
        StructField("late_events", LongType()),
        StructField("quarantined", LongType()),
        StructField("scored", LongType()),
        StructField("alerts", LongType()),
        StructField("details", StringType()),
    ]
)


def offsets_behind(progress: dict[str, Any]) -> int | None:
    """Messages between the batch's end offsets and the latest ones (Kafka sources)."""
    total = None
    for src in progress.get("sources", []):
        metrics = src.get("metrics") or {}
        if "maxOffsetsBehindLatest" in metrics:
            total = (total or 0) + int(float(metrics["maxOffsetsBehindLatest"]))
            continue
        end, latest = src.get("endOffset"), src.get("latestOffset")
        if isinstance(end, str) and isinstance(latest, str):
            try:
                e, la = json.loads(end), json.loads(latest)
            except ValueError:
                continue
            if isinstance(e, dict) and isinstance(la, dict):
                for topic, parts in la.items():
                    for p, off in parts.items():
                        total = (total or 0) + max(0, int(off) - int(e.get(topic, {}).get(p, 0)))
    return total


def late_events(progress: dict[str, Any]) -> int:
    return sum(
        int(op.get("numRowsDroppedByWatermark", 0)) for op in progress.get("stateOperators", [])
    )


def to_row(query: str, progress: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    ts = dt.datetime.fromisoformat(progress["timestamp"].replace("Z", "+00:00"))
    return {
        "query": query,
        "run_id": str(progress.get("runId", "")),
        "batch_id": int(progress["batchId"]),
        "timestamp": ts.astimezone(dt.UTC).replace(tzinfo=None),
        "input_rows": int(progress.get("numInputRows", 0)),
        "input_rows_per_second": float(progress.get("inputRowsPerSecond") or 0.0),
        "processed_rows_per_second": float(progress.get("processedRowsPerSecond") or 0.0),
        "batch_duration_ms": int((progress.get("durationMs") or {}).get("triggerExecution", 0)),
        "offsets_behind": offsets_behind(progress),
        "late_events": late_events(progress),
        "quarantined": extra.get("quarantined"),
        "scored": extra.get("scored"),
        "alerts": extra.get("alerts"),
        "details": json.dumps(
            {k: v for k, v in extra.items() if k not in ("quarantined", "scored", "alerts")}
        ),
    }


def describe(row: dict[str, Any]) -> str:
    behind = "-" if row["offsets_behind"] is None else str(row["offsets_behind"])
    parts = [
        f"[{row['query']}] batch {row['batch_id']}",
        f"rows {row['input_rows']}",
        f"in {row['input_rows_per_second']:.0f}/s",
        f"done {row['processed_rows_per_second']:.0f}/s",
        f"behind {behind}",
        f"took {row['batch_duration_ms']} ms",
        f"late {row['late_events']}",
    ]
    if row["scored"] is not None:
        parts += [
            f"scored {row['scored']}",
            f"quarantined {row['quarantined']}",
            f"alerts {row['alerts']}",
        ]
    return " | ".join(parts)


# A batch in progress is reported as slow once it has run this many times the median of
# the recent batches, and at least SLOW_BATCH_SECONDS: one long batch after quiet ones
# is normal (a burst), a batch that stops making progress is not and would otherwise
# print nothing until it ends.
SLOW_BATCH_FACTOR = 4.0
SLOW_BATCH_SECONDS = 60.0


def slow_batch(
    running: tuple[int, float] | None, recent_seconds: list[float], now: float
) -> str | None:
    """A progress line for the scoring batch ``running`` = (batch id, wall-clock start)
    when it has run far longer than the recent batches took; None otherwise."""
    if running is None:
        return None
    batch_id, since = running
    usual = statistics.median(recent_seconds) if recent_seconds else 0.0
    elapsed = now - since
    if elapsed < max(SLOW_BATCH_SECONDS, SLOW_BATCH_FACTOR * usual):
        return None
    return (
        f"[score] batch {batch_id} still running after {elapsed:.0f} s (median batch {usual:.0f} s)"
    )


# A line naming an error: "RuntimeError: ...", ": java.lang.OutOfMemoryError: ...",
# "Caused by: org.apache...Exception: ...".
_ERROR_LINE = re.compile(r"^(?:: |Caused by: )?[\w.$]+(?:Error|Exception)\b")


def failure_reason(text: str) -> str:
    """One line saying why a query failed. A failure inside ``foreachBatch`` arrives as
    "An exception was raised by the Python Proxy. Return Message: Traceback ..." whose
    first line says nothing: the last line naming an error (the innermost cause) does."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "no message"
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    return (errors[-1] if errors else lines[0]).removeprefix(": ")


@dataclass
class Restarts:
    """When a failed query may be restarted from its checkpoint: at most ``limit``
    times in a row per query. A restart that then completes a trigger clears that
    query's count, so failures days apart (a broker upgrade each week) do not add up
    to the end of a stream that runs for months, while a query that fails again and
    again without progress (a batch that cannot be processed) ends the job."""

    limit: int
    # query name -> failures since its last completed trigger
    failures: dict[str, int] = field(default_factory=dict)

    def may_restart(self, query: str) -> bool:
        """Count a failure of ``query``; True if it may be restarted once more."""
        self.failures[query] = self.failures.get(query, 0) + 1
        return self.failures[query] <= self.limit

    def progressed(self, query: str) -> None:
        """``query`` completed a trigger: its earlier failures are forgiven."""
        self.failures.pop(query, None)


def record(spark: SparkSession, cfg: Config, rows: list[dict[str, Any]]) -> None:
    if rows:
        df = spark.createDataFrame([tuple(r[f.name] for f in SCHEMA) for r in rows], SCHEMA)
        merge_upsert(df, cfg, STREAM_PROGRESS, ("query", "run_id", "batch_id"))
