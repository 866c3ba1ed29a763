"""Fixtures of the validation tests: one Spark session, per-test lakehouse and input."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehound.cli import RunContext
from lakehound.config import Config, load_config
from lakehound.session import build_session

ROOT = Path(__file__).resolve().parents[2]
TX_CONF = ROOT / "conf" / "transactions.yaml"
HEADER = "transaction_id,account_id,merchant_id,merchant_category,amount,currency,country,channel,event_ts"


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    cfg = load_config(TX_CONF, ["spark.shuffle_partitions=2"])
    session = build_session(cfg.spark)
    yield session


def tx_line(i: int, *, day: str = "2024-01-02", amount: str = "12.50", **over: str) -> str:
    """One well-formed transactions CSV line; keyword overrides replace single fields."""
    values = {
        "transaction_id": f"t{i:05d}",
        "account_id": f"a{i % 7}",
        "merchant_id": f"m{i % 5}",
        "merchant_category": "grocery",
        "amount": amount,
        "currency": "EUR",
        "country": "DE",
        "channel": "pos",
        "event_ts": f"{day}T{(i // 60) % 24:02d}:{i % 60:02d}:00Z",
    }
    values.update(over)
    return ",".join(values[c] for c in HEADER.split(","))


def good_lines(n: int, *, day: str = "2024-01-02", start: int = 0) -> list[str]:
    return [tx_line(i, day=day) for i in range(start, start + n)]


def write_csv(
    root: Path, day: str, lines: list[str], *, name: str = "part-0.csv", header: str = HEADER
) -> Path:
    """Write ``<root>/event_date=<day>/<name>`` with the header and lines."""
    folder = root / f"event_date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def tx_config(tmp_path: Path, *extra: str) -> Config:
    return load_config(
        TX_CONF,
        [
            "spark.shuffle_partitions=2",
            f"lakehouse={tmp_path / 'lake'}",
            f"input.path={tmp_path / 'raw'}",
            "validation.data_docs=false",
            *extra,
        ],
    )


def argv(tmp_path: Path, *extra: str, date: str | None = "2024-01-02") -> list[str]:
    out = [
        "--config",
        str(TX_CONF),
        "--set",
        "spark.shuffle_partitions=2",
        "--set",
        f"lakehouse={tmp_path / 'lake'}",
        "--set",
        f"input.path={tmp_path / 'raw'}",
        "--set",
        "validation.data_docs=false",
    ]
    for item in extra:
        out += ["--set", item]
    if date:
        out += ["--date", date]
    return out


def ctx(date: str | None = "2024-01-02") -> RunContext:
    return RunContext(job="validate", date=dt.date.fromisoformat(date) if date else None)
