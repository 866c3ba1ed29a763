"""A small real lakehouse for the ops integration tests, built by running the jobs.

generate -> pipeline over every date -> analyst feedback -> "last night's" ensemble
scores of the latest date altered in place -> pipeline re-run of that date. So
``scores`` has a previous version to time-travel to, ``feedback`` exists for
precision over time, and every other table is the jobs' real output.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from jobs import feedback, generate, pipeline
from lakehound import io
from lakehound.cli import RunContext
from lakehound.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent.parent
# Small and quick: 60 accounts over 9 days is ~1,400 transactions. No Data Docs HTML
# and no distribution expectations (the slow GX parts); jobs that start their own JVM
# (the Airflow tasks) get 2 cores and 1 GB.
SMALL = [
    "generate.accounts=60",
    "generate.merchants=20",
    "generate.days=9",
    "train.train_days=7",
    "validation.data_docs=false",
    "validation.distribution_checks=false",
    "spark.shuffle_partitions=2",
    "spark.master=local[2]",
    "spark.driver_memory=1g",
]


@dataclass(frozen=True)
class OpsLakehouse:
    cfg: Config
    overrides: list[str]
    last_date: dt.date
    # scores' version before the re-run's last write (what the time-travel query reads).
    prev_version: int
    # (event_id, label, analyst, created order) exactly as recorded.
    verdicts: list[tuple[str, str, str]]


def table(cfg: Config, name: str, version: int | None = None) -> list[dict[str, object]]:
    """A Delta table's rows read with the deltalake package (no Spark)."""
    dt_ = DeltaTable(io.table_path(cfg, name), version=version)
    return dt_.to_pyarrow_table().to_pylist()


# Rows the contract rejects, added to two dates' raw feed (the generator writes clean
# data): (date, line) with the reason the validator should give.
BAD_ROWS = [
    ("2024-01-05", "bad-1,acct-000001,m-00001,grocery,abc,EUR,FR,online,2024-01-05T10:00:00.000Z"),
    ("2024-01-05", "bad-2,,m-00001,grocery,12.50,EUR,FR,online,2024-01-05T11:00:00.000Z"),
    (
        "2024-01-06",
        "bad-3,acct-000002,m-00002,grocery,not-a-number,EUR,FR,online,2024-01-06T09:00:00.000Z",
    ),
]


def _add_bad_rows(raw: Path) -> None:
    header = next(raw.rglob("*.csv")).read_text().splitlines()[0]
    for day in sorted({d for d, _ in BAD_ROWS}):
        lines = [line for d, line in BAD_ROWS if d == day]
        (raw / f"event_date={day}" / "bad-rows.csv").write_text("\n".join([header, *lines]) + "\n")


def build(spark: SparkSession, base: Path) -> OpsLakehouse:
    overrides = [f"lakehouse={base / 'lakehouse'}", f"input.path={base / 'raw'}", *SMALL]
    cfg = load_config(ROOT / "conf" / "transactions.yaml", overrides)
    generate.run(spark, cfg, RunContext("generate", None))
    _add_bad_rows(Path(cfg.input.path))
    pipeline.run(spark, cfg, RunContext("pipeline", None))

    # Verdicts on the two highest alerts of the first two alert dates; a second
    # analyst later overturns one of them (the latest verdict counts).
    alerts = sorted(table(cfg, "alerts"), key=lambda r: (r["event_date"], -r["severity"]))  # type: ignore[operator]
    dates = sorted({r["event_date"] for r in alerts})[:2]  # type: ignore[type-var]
    picked = [r["event_id"] for d in dates for r in [a for a in alerts if a["event_date"] == d][:2]]
    verdicts = [
        (str(picked[0]), "true_positive", "alice"),
        (str(picked[1]), "false_positive", "alice"),
        (str(picked[2]), "true_positive", "alice"),
        (str(picked[3]), "true_positive", "alice"),
        (str(picked[0]), "false_positive", "bob"),
    ]
    for event_id, label, analyst in verdicts:
        feedback.record(spark, cfg, event_id, label, analyst)

    # "Last night's" run scored the latest date differently; this morning's re-run
    # replaces it. Halving its ensemble severities makes the two versions differ.
    last = max(r["event_date"] for r in table(cfg, "scores"))  # type: ignore[type-var]
    spark.sql(
        f"UPDATE delta.`{io.table_path(cfg, 'scores')}` SET severity = severity / 2 "
        f"WHERE detector = 'ensemble' AND event_date = DATE'{last}'"
    )
    before_rerun = DeltaTable(io.table_path(cfg, "scores")).version()
    pipeline.run(spark, cfg, RunContext("pipeline", last))  # type: ignore[arg-type]
    after = DeltaTable(io.table_path(cfg, "scores"))
    assert after.version() == before_rerun + 1, "the re-run should write scores once"
    return OpsLakehouse(cfg, overrides, last, after.version() - 1, verdicts)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def ops_lakehouse(
    spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpsLakehouse]:
    yield build(spark, tmp_path_factory.mktemp("ops"))
