"""Alert delivery: an HTTP webhook with retries and exponential backoff, a Kafka
alerts topic, and the ``dead_letters`` Delta table for what could not be delivered.

Delivery is at least once: a micro-batch replayed after a crash sends its alerts
again, each with an ``Idempotency-Key`` header (the event id) so the receiver can
drop the repeat. Undelivered alerts never stop the stream: they are dead-lettered
and retried at the start of later batches until delivered.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, StringType, StructField, StructType, TimestampType

from lakehound import io
from lakehound.config import Config, StreamSettings
from lakehound.streaming.sinks import merge_upsert

log = logging.getLogger("lakehound.stream.delivery")

DEAD_LETTERS = "dead_letters"
DEAD_LETTER_SCHEMA = StructType(
    [
        StructField("event_id", StringType(), False),
        StructField("target", StringType(), False),  # "webhook" or "kafka"
        StructField("payload", StringType(), False),
        StructField("error", StringType()),
        StructField("attempts", IntegerType(), False),
        StructField("status", StringType(), False),  # pending, delivered
        StructField("updated_at", TimestampType(), False),
    ]
)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    attempts: int
    error: str = ""


def post_json(
    url: str,
    body: str,
    key: str,
    retries: int,
    backoff: float,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """POST ``body``; retry on connection errors, 5xx and 429 with backoff * 2**attempt."""
    error = ""
    for attempt in range(retries + 1):
        if attempt:
            sleep(backoff * 2 ** (attempt - 1))
        req = urllib.request.Request(
            url,
            data=body.encode("utf-8"),
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": key},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                if 200 <= resp.status < 300:
                    return Outcome(True, attempt + 1)
                error = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
            # A 4xx other than 429 will not get better by retrying.
            if 400 <= exc.code < 500 and exc.code != 429:
                return Outcome(False, attempt + 1, error)
        except (urllib.error.URLError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
    return Outcome(False, retries + 1, error)


def alert_payloads(alerts: DataFrame) -> list[tuple[str, str]]:
    """(event_id, JSON) per alert, collected on the driver: alerts are few per batch."""
    rows = alerts.select("event_id", F.to_json(F.struct(*alerts.columns)).alias("j")).collect()
    return [(r["event_id"], r["j"]) for r in rows]


def deliver_webhook(
    settings: StreamSettings, payloads: Sequence[tuple[str, str]]
) -> list[tuple[str, str, Outcome]]:
    return [
        (
            key,
            body,
            post_json(
                settings.webhook_url,
                body,
                key,
                settings.webhook_retries,
                settings.webhook_backoff_seconds,
                settings.webhook_timeout_seconds,
            ),
        )
        for key, body in payloads
    ]


def publish_kafka(
    spark: SparkSession, settings: StreamSettings, payloads: Sequence[tuple[str, str]]
) -> str:
    """Write the alerts to ``alerts_topic``; the error text, or "" on success."""
    if not payloads:
        return ""
    try:
        (
            spark.createDataFrame(list(payloads), "key string, value string")
            .write.format("kafka")
            .option("kafka.bootstrap.servers", settings.bootstrap_servers)
            .option("topic", settings.alerts_topic)
            # Fail fast when the broker is away: the alerts are dead-lettered and retried.
            .option("kafka.delivery.timeout.ms", "15000")
            .option("kafka.request.timeout.ms", "10000")
            .save()
        )
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    return ""


def record(spark: SparkSession, cfg: Config, rows: Sequence[dict[str, Any]]) -> None:
    """Upsert dead-letter rows (pending or now delivered) keyed on (event_id, target)."""
    if rows:
        df = spark.createDataFrame(
            [tuple(r[f.name] for f in DEAD_LETTER_SCHEMA) for r in rows], DEAD_LETTER_SCHEMA
        )
        merge_upsert(df, cfg, DEAD_LETTERS, ("event_id", "target"))


def _row(
    key: str, target: str, body: str, error: str, attempts: int, status: str
) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return {"event_id": key, "target": target, "payload": body, "error": error,
            "attempts": attempts, "status": status, "updated_at": now}  # fmt: skip


def pending(spark: SparkSession, cfg: Config) -> list[tuple[str, str, str, int]]:
    """(event_id, target, payload, attempts) of undelivered dead letters."""
    if not io.table_exists(spark, cfg, DEAD_LETTERS):
        return []
    rows = io.read_table(spark, cfg, DEAD_LETTERS).where(F.col("status") == "pending").collect()
    return [(r["event_id"], r["target"], r["payload"], int(r["attempts"])) for r in rows]


def deliver(
    spark: SparkSession, cfg: Config, payloads: Sequence[tuple[str, str]]
) -> dict[str, int]:
    """Send this batch's alerts and retry earlier dead letters; count the outcomes."""
    s = cfg.stream
    counts = {"delivered": 0, "dead_lettered": 0, "redelivered": 0}
    out: list[dict[str, Any]] = []
    retry = pending(spark, cfg)
    if s.webhook_url:
        # Earlier dead letters first, one attempt each, stopping at the first failure:
        # while the endpoint is down this costs one request per batch, not a backlog.
        for key, target, body, attempts in retry:
            if target != "webhook":
                continue
            res = post_json(s.webhook_url, body, key, 0, 0.0, s.webhook_timeout_seconds)
            if not res.ok:
                break
            counts["redelivered"] += 1
            out.append(_row(key, "webhook", body, "", attempts + 1, "delivered"))
        for key, body, res in deliver_webhook(s, payloads):
            if res.ok:
                counts["delivered"] += 1
                continue
            counts["dead_lettered"] += 1
            log.warning(
                "webhook delivery of %s failed after %d attempts: %s", key, res.attempts, res.error
            )
            out.append(_row(key, "webhook", body, res.error, res.attempts, "pending"))
    if s.alerts_topic:
        old = [(k, b) for k, t, b, _ in retry if t == "kafka"]
        error = publish_kafka(spark, s, [*old, *payloads])
        status = "delivered" if not error else "pending"
        out += [_row(k, "kafka", b, error, 1, status) for k, b in old]
        if error:
            counts["dead_lettered"] += len(payloads)
            out += [_row(k, "kafka", b, error, 1, "pending") for k, b in payloads]
        else:
            counts["redelivered"] += len(old)
    record(spark, cfg, out)
    return counts


def has_targets(cfg: Config) -> bool:
    return bool(cfg.stream.webhook_url or cfg.stream.alerts_topic)
