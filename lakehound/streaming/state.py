"""The event-time windowed per-entity aggregate: events, amount sum and maximum per
(entity, window), with a watermark so Spark can drop old state.

Events older than the watermark are dropped by the aggregation and counted by Spark
(``numRowsDroppedByWatermark`` in the query progress); ``progress`` reports that
count as the stream's late events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehound.config import Config
from lakehound.streaming.process import parse_payloads
from lakehound.validation.rules import REASONS, classify
from schemas.base import Contract

ENTITY_WINDOWS = "entity_windows"


def entity_column(contract: Contract) -> str:
    for name in ("account_id", "card_id", "host", "machine_id", "series_id"):
        if name in contract.column_names:
            return name
    return contract.column_names[0]


def valid_events(stream: DataFrame, contract: Contract, cfg: Config, now: dt.datetime) -> DataFrame:
    """Valid rows of a streaming ``payload, source`` frame. The duplicate rule needs a
    window over the whole batch, which a streaming plan cannot have: it is left to the
    scoring query, whose MERGE keeps one row per key."""
    keyless = dataclasses.replace(contract, key=())
    parsed = parse_payloads(stream, contract, cfg.stream.max_payload_bytes).drop("_too_large")
    out = classify(
        parsed, keyless, cfg.validation, run_date=None, fallback_date=now.date(), now=now
    )
    return out.where(F.size(REASONS) == 0)


def windowed_aggregate(events: DataFrame, contract: Contract, cfg: Config) -> DataFrame:
    """(entity_id, window_start, window_end, events, amount_sum, amount_max) per window."""
    if contract.event_time is None:
        raise ValueError(f"contract {contract.name} has no event time to window on")
    ts = contract.event_time
    entity = entity_column(contract)
    amount = "amount" if "amount" in contract.column_names else None
    aggs = [F.count("*").alias("events")]
    if amount:
        aggs += [F.sum(amount).alias("amount_sum"), F.max(amount).alias("amount_max")]
    return (
        events.withWatermark(ts, cfg.stream.watermark)
        .groupBy(F.window(ts, cfg.stream.window), F.col(entity).alias("entity_id"))
        .agg(*aggs)
        .select(
            "entity_id",
            F.col("window.start").alias("window_start"),
            F.col("window.end").alias("window_end"),
            *[a for a in ("events", "amount_sum", "amount_max") if a == "events" or amount],
        )
    )
