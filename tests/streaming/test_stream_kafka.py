"""Kafka -> jobs.stream -> Delta against a real broker, bounded in time.

Expected values come from what the tests produced (ids counted here), and tables are
read back with the ``deltalake`` package, not with the code under test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs import stream
from lakehound.cli import RunContext
from lakehound.config import load_config
from tests.streaming.conftest import (
    ROOT,
    STREAM_START,
    Broker,
    Webhook,
    lakehouse_copy,
    make_events,
    poison_messages,
    stream_overrides,
)

pytestmark = pytest.mark.integration


def produce(
    spark: SparkSession, broker: Broker, topic: str, messages: list[tuple[str, str]]
) -> None:
    (
        spark.createDataFrame(messages, "key string, value string")
        .coalesce(1)
        .write.format("kafka")
        .option("kafka.bootstrap.servers", broker.bootstrap)
        .option("topic", topic)
        .save()
    )


def good(events: list[dict[str, object]]) -> list[tuple[str, str]]:
    return [(str(e["transaction_id"]), json.dumps(e)) for e in events]


def table(root: Path, name: str) -> list[dict[str, object]]:
    path = root / "lakehouse" / "transactions" / name
    try:
        return DeltaTable(str(path)).to_pyarrow_table().to_pylist()
    except Exception:  # not created yet, or its first commit is being written
        return []


def ensemble_ids(root: Path, prefix: str) -> Counter[str]:
    return Counter(
        str(r["event_id"])
        for r in table(root, "scores")
        if r["detector"] == "ensemble" and str(r["event_id"]).startswith(prefix)
    )


def test_kafka_poison_exactly_once_late_events_and_webhook_back(
    spark: SparkSession,
    kafka_broker: Broker,
    trained_lakehouse: Path,
    tmp_path: Path,
    webhook: Webhook,
) -> None:
    root = lakehouse_copy(trained_lakehouse, tmp_path)
    topic = "tx_poison"
    events = make_events("K", 30)
    bad = poison_messages("k")
    # Poison interleaved with good messages, in one partition order.
    messages = good(events[:10]) + [(f"bad-{k}", v) for k, v in bad.items()] + good(events[10:])
    produce(spark, kafka_broker, topic, messages)
    base = [
        *stream_overrides(root),
        "stream.source=kafka",
        f"stream.bootstrap_servers={kafka_broker.bootstrap}",
        f"stream.topic={topic}",
        f"stream.alerts_topic={topic}_alerts",
        "stream.max_payload_bytes=100000",
        "stream.webhook_retries=1",
        "stream.webhook_backoff_seconds=0.01",
    ]
    cfg_down = load_config(
        ROOT / "conf" / "transactions.yaml", [*base, "stream.webhook_url=http://127.0.0.1:9/down"]
    )
    stream.run(spark, cfg_down, RunContext("stream", None), available_now=True, timeout=400)

    # Every good event scored exactly once, every bad one quarantined once.
    assert ensemble_ids(root, "K") == Counter(str(e["transaction_id"]) for e in events)
    members = {d.id for d in cfg_down.scoring.detectors}
    per_detector = Counter(
        r["detector"] for r in table(root, "scores") if str(r["event_id"]).startswith("K")
    )
    assert per_detector == Counter({d: len(events) for d in [*members, "ensemble"]})
    quarantine = [
        r for r in table(root, "quarantine") if str(r["source_file"]).startswith(f"kafka:{topic}:")
    ]
    assert len(quarantine) == len(bad)
    assert {str(r["raw_record"])[:30] for r in quarantine} == {v[:30] for v in bad.values()}
    # Alerts: exactly the ensemble rows at or above the threshold, once each.
    threshold = cfg_down.scoring.alert_severity
    expected_alerts = {
        str(r["event_id"]) for r in table(root, "scores")
        if r["detector"] == "ensemble" and float(r["severity"]) >= threshold  # type: ignore[arg-type]
    }  # fmt: skip
    alerts = Counter(str(r["event_id"]) for r in table(root, "alerts"))
    assert set(alerts) == expected_alerts and all(n == 1 for n in alerts.values())
    assert alerts, "the 90k amounts should raise at least one alert"
    # The webhook was down: every alert is a pending dead letter; Kafka got them all.
    letters = table(root, "dead_letters")
    assert {
        str(r["event_id"]) for r in letters if r["target"] == "webhook" and r["status"] == "pending"
    } == set(alerts)
    published = (
        spark.read.format("kafka").option("kafka.bootstrap.servers", kafka_broker.bootstrap)
        .option("subscribe", f"{topic}_alerts").option("startingOffsets", "earliest").load()
        .select(F.col("key").cast("string")).collect()
    )  # fmt: skip
    assert {r[0] for r in published} == set(alerts)
    assert table(root, "stream_progress"), "progress rows are recorded"

    # Replay: same topic, nothing new -> nothing changes. Then one late event (an hour
    # behind the watermark) and new events, with the webhook back up.
    late = make_events("L", 1, start=dt.datetime(2024, 1, 3, 23, 0))
    more = make_events("M", 5, start=STREAM_START + dt.timedelta(hours=1), seed=2)
    produce(spark, kafka_broker, topic, good(late + more))
    cfg_up = load_config(
        ROOT / "conf" / "transactions.yaml", [*base, f"stream.webhook_url={webhook.url}"]
    )
    stream.run(spark, cfg_up, RunContext("stream", None), available_now=True, timeout=400)

    assert ensemble_ids(root, "K") == Counter(str(e["transaction_id"]) for e in events)
    assert ensemble_ids(root, "M") == Counter(str(e["transaction_id"]) for e in more)
    assert ensemble_ids(root, "L") == Counter({"L0": 1})  # late for the window, still scored
    assert len(
        [
            r
            for r in table(root, "quarantine")
            if str(r["source_file"]).startswith(f"kafka:{topic}:")
        ]
    ) == len(bad)
    # The webhook is back: the dead letters were redelivered.
    assert set(alerts) <= set(webhook.keys)
    assert all(
        r["status"] == "delivered" for r in table(root, "dead_letters") if r["target"] == "webhook"
    )
    # The late event fell behind the watermark of the window aggregate and was counted.
    progress = table(root, "stream_progress")
    assert sum(int(r["late_events"] or 0) for r in progress if r["query"] == "entity_windows") >= 1  # type: ignore[arg-type]
    windows = table(root, "entity_windows")
    assert sum(int(r["events"]) for r in windows) == len(events) + len(more)  # type: ignore[arg-type]


_LOGS: dict[int, Path] = {}  # pid -> the job's log


def _job(root: Path, broker: Broker, topic: str, *extra: str) -> subprocess.Popen[str]:
    """``jobs.stream`` in its own process, its output in ``root/job-<ns>.log``."""
    sets = [
        *stream_overrides(root),
        "spark.driver_memory=1g",
        "stream.source=kafka",
        f"stream.bootstrap_servers={broker.bootstrap}",
        f"stream.topic={topic}",
        "stream.max_per_trigger=10",
    ]
    argv = [
        sys.executable,
        "-m",
        "jobs.stream",
        "--config",
        str(ROOT / "conf" / "transactions.yaml"),
    ]
    for s in sets:
        argv += ["--set", s]
    log = open(root / f"job-{time.monotonic_ns()}.log", "w")  # noqa: SIM115 - closed with the process
    # Its own process group: the Python driver and the JVM it starts are killed together.
    job = subprocess.Popen([*argv, *extra], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
                           start_new_session=True)  # fmt: skip
    _LOGS[job.pid] = Path(log.name)
    return job


def _exited_ok(job: subprocess.Popen[str], timeout: float) -> None:
    """Wait for ``job``; if it failed, the assertion carries the tail of its log (CI
    keeps nothing else of it)."""
    try:
        code = job.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        raise
    if code != 0:
        log = _LOGS[job.pid]
        tail = "\n".join(log.read_text().splitlines()[-60:])
        raise AssertionError(f"jobs.stream exited {code}; the end of {log.name}:\n{tail}")


def _wait(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_sigkill_and_broker_restart_lose_nothing_duplicate_nothing(
    spark: SparkSession, kafka_broker: Broker, trained_lakehouse: Path, tmp_path: Path
) -> None:
    root = lakehouse_copy(trained_lakehouse, tmp_path)
    topic = "tx_kill"
    first = make_events("A", 60)
    produce(spark, kafka_broker, topic, good(first))
    job = _job(root, kafka_broker, topic)
    try:
        # Killed once some but not all batches are committed: mid-stream, mid-batch.
        _wait(lambda: len(ensemble_ids(root, "A")) >= 10, 300, "the first batches")
        kafka_broker.stop()
        time.sleep(3)
        kafka_broker.start()
        second = make_events("B", 20, seed=3)
        produce(spark, kafka_broker, topic, good(second))
        assert job.poll() is None, "the broker restart must not stop the stream"
        # The whole job at once, Python driver and JVM, as when its container is lost:
        # killing Python alone can leave the JVM finishing a commit in its shutdown while
        # the restarted job already runs, two drivers on one checkpoint.
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    done = len(ensemble_ids(root, "A")) + len(ensemble_ids(root, "B"))
    assert done < len(first) + len(second), "killed after everything was done: not a crash test"

    again = _job(
        root, kafka_broker, topic, "--available-now", "--timeout", "400",
        "--set", "stream.max_per_trigger=null",
    )  # fmt: skip
    _exited_ok(again, 450)
    assert ensemble_ids(root, "A") == Counter(str(e["transaction_id"]) for e in first)
    assert ensemble_ids(root, "B") == Counter(str(e["transaction_id"]) for e in second)
    alerts = Counter(str(r["event_id"]) for r in table(root, "alerts"))
    assert all(n == 1 for n in alerts.values())
    assert {k for k in alerts if k[0] in "AB"} == {
        str(r["event_id"]) for r in table(root, "scores")
        if r["detector"] == "ensemble" and str(r["event_id"])[0] in "AB" and float(r["severity"]) >= 97.0  # type: ignore[arg-type]
    }  # fmt: skip
