"""One micro-batch, as pure DataFrame functions: payloads -> classified rows ->
quarantine / accepted events -> features (with look-back history) -> wide scores.

Everything reuses the batch code: the contract (``schemas``), the row rules
(:func:`lakehound.validation.rules.classify`), the feature builder
(:func:`lakehound.features.build.build_features`) and the scoring core (:mod:`lakehound.scoring`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehound import io
from lakehound.config import Config
from lakehound.features.build import build_features, lookback_days
from lakehound.streaming.sources import CORRUPT, PAYLOAD, SOURCE, string_schema
from lakehound.validation import reader
from lakehound.validation.rules import REASONS, SOURCE_FILE, classify
from schemas.base import Contract

TOO_LARGE = "payload_too_large"
# Rows the stream accepted (the contract's typed columns); the look-back of later batches.
STREAM_EVENTS = "stream_events"
# Entity columns whose look-back a micro-batch reads (those the contract has).
ENTITY_COLUMNS = ("account_id", "merchant_id")
_IN_BATCH = "_in_batch"


def parse_payloads(batch: DataFrame, contract: Contract, max_bytes: int) -> DataFrame:
    """``payload, source`` -> the reader's frame shape that ``classify`` expects.

    A payload that is not a JSON object, or is longer than ``max_bytes``, is marked
    malformed; its raw text is kept (a huge one truncated to ``max_bytes``).
    """
    schema = string_schema(contract).add(CORRUPT, "string")
    too_large = F.octet_length(PAYLOAD) > max_bytes
    # Not parsed at all when too large: from_json on megabytes is wasted work.
    parsed = F.when(
        ~too_large,
        F.from_json(PAYLOAD, schema, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}),
    )
    df = batch.select(PAYLOAD, SOURCE, too_large.alias("_too_large"), parsed.alias("_p"))
    malformed = (
        F.col("_too_large")
        | F.col(PAYLOAD).isNull()
        | F.col("_p").isNull()
        | F.col(f"_p.{CORRUPT}").isNotNull()
    )
    return df.select(
        *[F.when(~malformed, F.col(f"_p.`{c}`")).alias(c) for c in contract.column_names],
        F.when(F.col("_too_large"), F.substring(PAYLOAD, 1, max_bytes))
        .otherwise(F.col(PAYLOAD))
        .alias(reader.RAW),
        malformed.alias(reader.MALFORMED),
        F.col(SOURCE).alias(reader.SOURCE),
        F.col("_too_large"),
    )


def classify_batch(
    batch: DataFrame, contract: Contract, cfg: Config, now: dt.datetime
) -> DataFrame:
    """Typed contract columns, ``event_date``, ``raw_record``, ``source_file``, ``reasons``."""
    parsed = parse_payloads(batch, contract, cfg.stream.max_payload_bytes)
    # classify drops unknown columns, so the size flag travels in the source column.
    flagged = parsed.withColumn(
        reader.SOURCE,
        F.when(F.col("_too_large"), F.concat(F.col(reader.SOURCE), F.lit("#too_large"))).otherwise(
            F.col(reader.SOURCE)
        ),
    ).drop("_too_large")
    out = classify(
        flagged, contract, cfg.validation, run_date=None, fallback_date=now.date(), now=now
    )
    big = F.col(SOURCE_FILE).endswith("#too_large")
    return out.withColumn(
        REASONS,
        F.when(big, F.array_union(F.array(F.lit(TOO_LARGE)), F.col(REASONS))).otherwise(
            F.col(REASONS)
        ),
    ).withColumn(SOURCE_FILE, F.regexp_replace(SOURCE_FILE, "#too_large$", ""))


def accepted_rows(classified: DataFrame, contract: Contract) -> DataFrame:
    """Valid messages: the contract's typed columns plus ``event_date``."""
    return classified.where(F.size(REASONS) == 0).select(*contract.column_names, io.DATE_COL)


@dataclass(frozen=True)
class BatchSummary:
    """What the look-back read and the MERGEs need to know about a micro-batch's
    events, from one Spark job: event time bounds and event dates."""

    earliest: dt.datetime | None
    latest: dt.datetime | None
    dates: list[dt.date]

    @property
    def event_ts_range(self) -> tuple[dt.datetime, dt.datetime] | None:
        if self.earliest is None or self.latest is None:
            return None
        return (self.earliest, self.latest)


def summarize(events: DataFrame) -> BatchSummary:
    row = events.agg(
        F.min("event_ts").alias("_lo"),
        F.max("event_ts").alias("_hi"),
        F.collect_set(io.DATE_COL).alias("_dates"),
    ).first()
    if row is None:
        return BatchSummary(None, None, [])
    return BatchSummary(row["_lo"], row["_hi"], sorted(row["_dates"]))


def history(
    spark: SparkSession,
    cfg: Config,
    contract: Contract,
    events: DataFrame,
    summary: BatchSummary,
) -> DataFrame | None:
    """Earlier rows of the batch's accounts and merchants within the feature look-back,
    from the batch ``validated`` table and the stream's own ``stream_events``.

    Restricting to the batch's entities keeps a micro-batch's window work proportional
    to the entities it touches, not to the whole lake.
    """
    if summary.earliest is None:
        return None
    since = summary.earliest - dt.timedelta(days=lookback_days(cfg))
    frames = [
        io.read_table(spark, cfg, t).select(*contract.column_names, io.DATE_COL)
        for t in ("validated", STREAM_EVENTS)
        if io.table_exists(spark, cfg, t)
    ]
    if not frames:
        return None
    rows = reduce(DataFrame.unionByName, frames).where(
        (F.col(io.DATE_COL) >= F.lit(since.date())) & (F.col("event_ts") >= F.lit(since))
    )
    entity_cols = [c for c in ENTITY_COLUMNS if c in contract.column_names]
    if not entity_cols:
        return rows
    # A row is kept when its account or its merchant is in the batch. The batch's
    # distinct entities are broadcast and joined as flags, not collected into an
    # isin() list: at thousands of accounts per batch that list cost one py4j call
    # per id and a driver round trip, every batch.
    flags = []
    for c in entity_cols:
        flag = f"_touched_{c}"
        touched = events.select(c).distinct().withColumn(flag, F.lit(True))
        rows = rows.join(F.broadcast(touched), c, "left")
        flags.append(F.col(flag).isNotNull())
    return rows.where(reduce(lambda a, b: a | b, flags)).select(*contract.column_names, io.DATE_COL)


def features_for(
    spark: SparkSession,
    cfg: Config,
    contract: Contract,
    events: DataFrame,
    labels: DataFrame | None,
    summary: BatchSummary | None = None,
) -> DataFrame:
    """The batch's feature rows, computed over the batch plus its look-back history.
    ``summary``: :func:`summarize` of ``events``, if the caller has it already."""
    key = contract.key[0] if contract.key else "event_id"
    summary = summary or summarize(events)
    past = history(spark, cfg, contract, events, summary)
    # Only the batch's own rows are featurized; the history rows feed their windows.
    window = events.withColumn(_IN_BATCH, F.lit(True))
    if past is not None:
        # A replayed or re-sent event is already in the history: keep one copy.
        earlier = past.join(events.select(key), key, "left_anti")
        window = window.unionByName(earlier.withColumn(_IN_BATCH, F.lit(False)))
    feats = build_features(window, cfg, summary.dates, labels=labels, emit=F.col(_IN_BATCH))
    return feats.join(events.select(F.col(key).alias("event_id")), "event_id", "left_semi")
