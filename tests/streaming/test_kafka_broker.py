"""The local KRaft broker works with Spark's Kafka source and sink, and keeps its data
across a restart (what the broker-restart failure test of the stream builds on)."""

from __future__ import annotations

import json

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from tests.streaming.conftest import Broker

pytestmark = pytest.mark.integration


def _produce(spark: SparkSession, broker: Broker, topic: str, ids: range) -> None:
    rows = [(f"T{i}", json.dumps({"event_id": f"T{i}", "amount": i * 1.5})) for i in ids]
    (
        spark.createDataFrame(rows, "key string, value string")
        .write.format("kafka")
        .option("kafka.bootstrap.servers", broker.bootstrap)
        .option("topic", topic)
        .save()
    )


def _read_all(spark: SparkSession, broker: Broker, topic: str) -> dict[str, float]:
    df = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", broker.bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
        .select(F.col("key").cast("string"), F.col("value").cast("string"))
    )
    out: dict[str, float] = {}
    for row in df.collect():
        assert row["key"] not in out, f"duplicate message {row['key']}"
        out[row["key"]] = json.loads(row["value"])["amount"]
    return out


def test_round_trip_and_restart(spark: SparkSession, kafka_broker: Broker) -> None:
    topic = "broker_smoke"
    _produce(spark, kafka_broker, topic, range(0, 50))
    assert _read_all(spark, kafka_broker, topic) == {f"T{i}": i * 1.5 for i in range(50)}

    kafka_broker.stop()
    kafka_broker.start()
    # Same topic, same messages after the restart: the log dir survived, nothing re-formatted.
    _produce(spark, kafka_broker, topic, range(50, 60))
    assert _read_all(spark, kafka_broker, topic) == {f"T{i}": i * 1.5 for i in range(60)}
