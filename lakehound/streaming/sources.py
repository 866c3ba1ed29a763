"""Streaming sources as one shape: ``payload`` (the message text) and ``source`` (where
it came from, unique per Kafka message: ``kafka:<topic>:<partition>:<offset>``).

Payloads stay raw strings here: parsing is the micro-batch's job, so a message that
is not JSON becomes a quarantine row instead of a failed query.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from lakehound.config import Config, StreamSettings
from schemas.base import Contract

PAYLOAD = "payload"
SOURCE = "source"
CORRUPT = "_corrupt_record"


def kafka_options(settings: StreamSettings) -> dict[str, str]:
    opts = {
        "kafka.bootstrap.servers": settings.bootstrap_servers,
        "subscribe": settings.topic,
        "startingOffsets": settings.starting_offsets,
        # A broker restart or a deleted segment must not kill the query; the
        # checkpoint decides which offsets were processed.
        "failOnDataLoss": "false",
        # Ride out a broker restart instead of failing the query after 3 tries.
        "fetchOffset.numRetries": "60",
        "fetchOffset.retryIntervalMs": "1000",
    }
    if settings.max_per_trigger:
        opts["maxOffsetsPerTrigger"] = str(settings.max_per_trigger)
    return opts


def read_kafka(spark: SparkSession, settings: StreamSettings) -> DataFrame:
    raw = spark.readStream.format("kafka").options(**kafka_options(settings)).load()
    return raw.select(
        F.col("value").cast("string").alias(PAYLOAD),
        F.concat_ws(
            ":", F.lit("kafka"), "topic", F.col("partition").cast("string"), F.col("offset")
        ).alias(SOURCE),
    )


def string_schema(contract: Contract) -> StructType:
    """The contract's columns as strings: types are checked by rule, not by the reader."""
    return StructType([StructField(c, StringType()) for c in contract.column_names])


def read_files(spark: SparkSession, settings: StreamSettings, contract: Contract) -> DataFrame:
    """New files in the landing folder; JSON lines pass through as text, CSV rows are
    re-rendered as JSON objects so both formats share one parser."""
    path = str(Path(settings.landing_dir).resolve())
    Path(path).mkdir(parents=True, exist_ok=True)
    reader = spark.readStream
    if settings.max_per_trigger:
        reader = reader.option("maxFilesPerTrigger", settings.max_per_trigger)
    if settings.landing_format == "json":
        df = reader.format("text").load(path)
        return df.select(F.col("value").alias(PAYLOAD), F.input_file_name().alias(SOURCE))
    schema = string_schema(contract).add(StructField(CORRUPT, StringType()))
    df = (
        reader.format("csv")
        .schema(schema)
        .option("header", "true")
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT)
        .load(path)
    )
    as_json = F.to_json(F.struct(*[F.col(c) for c in contract.column_names]))
    return df.select(
        F.coalesce(F.col(CORRUPT), as_json).alias(PAYLOAD),
        F.input_file_name().alias(SOURCE),
    )


def read_source(spark: SparkSession, cfg: Config, contract: Contract) -> DataFrame:
    if cfg.stream.source == "kafka":
        return read_kafka(spark, cfg.stream)
    return read_files(spark, cfg.stream, contract)
