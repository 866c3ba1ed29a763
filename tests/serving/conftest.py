"""A small demo lakehouse with production models, and the real server process on it.

The lakehouse (9 generated days, 120 accounts, 40 merchants; validate -> featurize
-> train -> score) is built once per session with the session's Spark. New events
are a tenth day from the same generator, written elsewhere, never validated: the
tests send them to the endpoint.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyspark.sql import SparkSession

from jobs import generate, pipeline
from lakehound.cli import RunContext
from lakehound.config import Config, load_config
from lakehound.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "generate.accounts=120",
    "generate.merchants=40",
    "generate.days=9",
    "train.train_days=7",
    "spark.shuffle_partitions=2",
]
NEW_DAY = "2024-01-10"


@dataclass(frozen=True)
class Lakehouse:
    root: Path
    overrides: list[str]
    new_events: list[dict[str, str]]

    def cfg(self, *more: str) -> Config:
        return load_config(ROOT / "conf" / "transactions.yaml", [*self.overrides, *more])


def _csv_rows(root: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for part in sorted(root.rglob("*.csv")):
        with part.open(newline="", encoding="utf-8") as fh:
            rows.extend(csv.DictReader(fh))
    return rows


@pytest.fixture(scope="session")
def lakehouse(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Lakehouse:
    root = tmp_path_factory.mktemp("serve")
    overrides = [f"lakehouse={root / 'lakehouse'}", f"input.path={root / 'raw'}", *SMALL]
    cfg = load_config(ROOT / "conf" / "transactions.yaml", overrides)
    generate.run(spark, cfg, RunContext("generate", None))
    pipeline.run(spark, cfg, RunContext("pipeline", None))
    new = load_config(
        ROOT / "conf" / "transactions.yaml",
        [*overrides, f"input.path={root / 'new'}", f"generate.start_date={NEW_DAY}",
         "generate.days=1", f"labels_path={root / 'new_labels'}"],
    )  # fmt: skip
    generate.run(spark, new, RunContext("generate", None))
    return Lakehouse(root, overrides, _csv_rows(root / "new"))


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def wait_ready(self, timeout: float = 600.0) -> None:
        # Start-up is a Spark session, the registry, the look-back read and the
        # replay of a log left by a crash: minutes on a loaded 2-core machine.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/ping", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(1)
        raise AssertionError(f"server not ready in {timeout}s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 600.0) -> int:
        # A clean stop writes the log to Delta first: several MERGEs.
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"server did not stop:\n{self.output()}") from None


def start_server(
    lh: Lakehouse, *extra: str, env: dict[str, str] | None = None, log_name: str = "serve"
) -> Server:
    port = free_port()
    log = lh.root / f"{log_name}-{port}.log"
    args = [
        sys.executable, "-m", "jobs.serve", "--config", str(ROOT / "conf" / "transactions.yaml"),
        "--port", str(port), *[a for o in lh.overrides for a in ("--set", o)],
        "--set", "spark.driver_memory=1g", "--set", "spark.master=local[1]",
        *[a for o in extra for a in ("--set", o)],
    ]  # fmt: skip
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    with log.open("wb") as fh:
        proc = subprocess.Popen(args, cwd=ROOT, env=full_env, stdout=fh, stderr=subprocess.STDOUT)
    return Server(proc, f"http://127.0.0.1:{port}", log)


@pytest.fixture
def server_factory(lakehouse: Lakehouse) -> Iterator[Any]:
    started: list[Server] = []

    def _start(*extra: str, env: dict[str, str] | None = None) -> Server:
        s = start_server(lakehouse, *extra, env=env)
        started.append(s)
        s.wait_ready()
        return s

    yield _start
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(30)
