"""A real single-node Kafka broker (KRaft) for the streaming integration tests.

Started with scripts/kafka/kafka.sh from the jars `make kafka-setup` put in .cache/kafka;
the tests fail naming the set-up step to run when those jars are missing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehound.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = ROOT / "scripts" / "kafka" / "kafka.sh"
KAFKA_JARS = ROOT / ".cache" / "kafka"


@dataclass
class Broker:
    directory: Path
    port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, action: str) -> None:
        subprocess.run(
            [str(KAFKA_SH), action, str(self.directory)],
            env={**os.environ, "KAFKA_PORT": str(self.port)},
            check=True,
            timeout=90,
        )

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    if not any(KAFKA_JARS.glob("kafka_2.12-*.jar")):
        # A failure, not a skip: the jars are part of the test environment.
        pytest.fail(
            f"Kafka jars missing in {KAFKA_JARS}: run `make kafka-setup` (part of `make setup`)",
            pytrace=False,
        )
    broker = Broker(tmp_path_factory.mktemp("kafka"), free_port(adjacent=2))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# --- live scoring: a tiny trained lakehouse and synthetic events ----------------------

HISTORY_START = dt.datetime(2024, 1, 1)
HISTORY_DAYS = 3
ACCOUNTS = 30
MERCHANTS = 12
# Events the tests stream start after the history, on its last day + 1.
STREAM_START = HISTORY_START + dt.timedelta(days=HISTORY_DAYS)
# One event in ALERT_EVERY has an amount no account ever paid: the alert candidates.
ALERT_EVERY = 10


def make_events(prefix: str, n: int, start: dt.datetime = STREAM_START, seed: int = 1,
                step_seconds: int = 30) -> list[dict[str, object]]:  # fmt: skip
    """``n`` valid transactions with ids ``<prefix><i>``, in the contract's JSON shape."""
    rnd = random.Random(seed)
    out: list[dict[str, object]] = []
    for i in range(n):
        amount = 90_000.0 if i % ALERT_EVERY == ALERT_EVERY - 1 else round(rnd.uniform(5, 120), 2)
        out.append(
            {
                "transaction_id": f"{prefix}{i}",
                "account_id": f"acct-{rnd.randrange(ACCOUNTS):06d}",
                "merchant_id": f"m-{rnd.randrange(MERCHANTS):05d}",
                "merchant_category": rnd.choice(["grocery", "fuel", "restaurant"]),
                "amount": amount,
                "currency": "EUR",
                "country": "DE",
                "channel": rnd.choice(["pos", "online"]),
                "event_ts": (start + dt.timedelta(seconds=step_seconds * i)).isoformat() + "Z",
            }
        )
    return out


def poison_messages(tag: str) -> dict[str, str]:
    """Bad messages, by kind: each must land in quarantine, none may stop the stream."""
    good = make_events(f"{tag}-poison-", 1)[0]
    return {
        "not_json": f"not json at all {tag} {{",
        "wrong_types": json.dumps({**good, "transaction_id": f"{tag}-wt", "amount": "lots"}),
        "not_an_object": f'[1, 2, "{tag}"]',
        "huge": json.dumps({**good, "transaction_id": f"{tag}-huge", "note": "x" * 200_000}),
    }


def stream_overrides(root: Path) -> list[str]:
    return [
        f"lakehouse={root / 'lakehouse'}",
        f"input.path={root / 'raw'}",
        "spark.master=local[2]",
        "spark.shuffle_partitions=2",
        "train.train_days=2",
        "train.tuning.enabled=false",
        "train.supervised.enabled=false",
        "stream.progress_seconds=2",
        "stream.trigger_interval=1 second",
    ]


def _history_rows() -> list[tuple[object, ...]]:
    rnd = random.Random(7)
    rows = []
    for day in range(HISTORY_DAYS):
        for a in range(ACCOUNTS):
            for k in range(4):
                ts = HISTORY_START + dt.timedelta(
                    days=day, hours=8 + 3 * k, minutes=rnd.randrange(60)
                )
                rows.append(
                    (
                        f"h{day}-{a}-{k}",
                        f"acct-{a:06d}",
                        f"m-{rnd.randrange(MERCHANTS):05d}",
                        "grocery",
                        round(rnd.uniform(5, 120), 2),
                        "EUR",
                        "DE",
                        "pos",
                        ts,
                        ts.date(),
                        "history",
                    )
                )
    return rows


@pytest.fixture(scope="session")
def trained_lakehouse(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lakehouse with ``validated`` history, ``features`` and production models.

    The history is written straight into ``validated`` (the stream's look-back) and
    the batch featurize and train jobs run on it: the smallest real set-up the
    stream's scoring needs. Tests copy it (:func:`lakehouse_copy`).
    """
    from jobs import featurize, train
    from lakehound import io
    from lakehound.cli import RunContext
    from lakehound.config import load_config
    from schemas.outputs import validated_contract
    from schemas.transactions import TRANSACTIONS

    root = tmp_path_factory.mktemp("trained")
    cfg = load_config(ROOT / "conf" / "transactions.yaml", stream_overrides(root))
    schema = validated_contract(TRANSACTIONS).schema()
    df = spark.createDataFrame(_history_rows(), schema)
    df.write.format("delta").partitionBy("event_date").save(io.table_path(cfg, "validated"))
    featurize.run(spark, cfg, RunContext("featurize", None))
    train.run(spark, cfg, RunContext("train", None))
    return root


def lakehouse_copy(trained: Path, dest: Path) -> Path:
    """A private copy of the trained lakehouse (model artifacts stay where the registry
    says, in the session's original, which outlives every test)."""
    shutil.copytree(trained / "lakehouse", dest / "lakehouse")
    return dest


# --- a webhook receiver for the alert-delivery tests -----------------------------------


@dataclass
class Webhook:
    """A local HTTP endpoint that alerts are POSTed to."""

    url: str
    # Status codes to answer, in order; once used up, every POST gets 200.
    script: list[int] = field(default_factory=list)
    # (Idempotency-Key, body) of every POST received, in arrival order.
    seen: list[tuple[str, str]] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return [k for k, _ in self.seen]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            hook.seen.append((self.headers["Idempotency-Key"], body))
            code = hook.script.pop(0) if hook.script else 200
            self.send_response(code)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass  # keep the test output to the test's own

    server = HTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield hook
    server.shutdown()
    server.server_close()
