"""jobs/maintain.py on real Delta tables: the run date's partition compacted, other
dates and skipped tables untouched, rows unchanged, unreferenced files vacuumed, one
``maintenance`` row per table and date however often it runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from jobs import maintain
from lakehound import io
from lakehound.cli import RunContext
from lakehound.config import Config
from lakehound.errors import ConfigError
from lakehound.maintenance import RETENTION_CHECK

D1, D2 = dt.date(2024, 1, 4), dt.date(2024, 1, 5)
SCHEMA = "id long, event_date date, v double"


def _append(spark: SparkSession, cfg: Config, table: str, rows: list[tuple], part: bool) -> None:
    # One task, so one file per partition and append.
    writer = spark.createDataFrame(rows, SCHEMA).coalesce(1).write.format("delta").mode("append")
    if part:
        writer = writer.partitionBy("event_date")
    writer.save(io.table_path(cfg, table))


def _on_disk(cfg: Config, table: str, sub: str = "") -> int:
    """Data files present in the table's directory (referenced or not)."""
    root = Path(io.table_path(cfg, table)) / sub
    return sum(1 for p in root.rglob("*.parquet") if "_delta_log" not in p.parts)


def _rows(cfg: Config, table: str) -> list[tuple]:
    t = DeltaTable(io.table_path(cfg, table)).to_pyarrow_table().to_pylist()
    return sorted((r["id"], r["event_date"], r["v"]) for r in t)


@pytest.fixture
def no_retention_check(spark: SparkSession) -> Iterator[None]:
    # What an operator sets to VACUUM below 7 days; the test needs it to see files go.
    spark.conf.set(RETENTION_CHECK, "false")
    yield
    spark.conf.unset(RETENTION_CHECK)


@pytest.fixture
def lake(spark: SparkSession, make_cfg: Callable[..., Config]) -> tuple[Config, dict[str, list]]:
    """scores: four files on each of two dates; registry (unpartitioned): three files;
    alerts: two files, skipped by config; a stream checkpoint and a directory that is
    not a Delta table."""
    cfg = make_cfg(
        "transactions", "maintenance.vacuum_retention_hours=0", "maintenance.skip=[alerts]"
    )
    written: dict[str, list] = {"scores": [], "registry": [], "alerts": []}
    for i in range(4):
        rows = [(i, D1, float(i)), (100 + i, D2, float(i))]
        _append(spark, cfg, "scores", rows, part=True)
        written["scores"] += rows
    for i in range(3):
        rows = [(i, D1, 0.5 * i)]
        _append(spark, cfg, "registry", rows, part=False)
        written["registry"] += rows
    for i in range(2):
        rows = [(i, D1, 1.0)]
        _append(spark, cfg, "alerts", rows, part=True)
        written["alerts"] += rows
    base = Path(io.table_path(cfg, ""))
    (base / "_checkpoints" / "stream").mkdir(parents=True)
    (base / "_checkpoints" / "stream" / "metadata").write_text("{}")
    (base / "exports").mkdir()
    (base / "exports" / "part-0.parquet").write_bytes(b"not a delta table")
    return cfg, written


def test_maintain_compacts_the_run_date_and_vacuums(
    spark: SparkSession, lake: tuple[Config, dict[str, list]], no_retention_check: None
) -> None:
    cfg, written = lake
    assert (_on_disk(cfg, "scores", f"event_date={D1}"), _on_disk(cfg, "registry")) == (4, 3)

    done = maintain.run(spark, cfg, RunContext("maintain", D1))

    assert {u.table for u in done} == {"scores", "registry"}
    by_table = {u.table: u for u in done}
    assert (
        by_table["scores"].compaction.files_removed,
        by_table["scores"].compaction.files_added,
    ) == (4, 1)
    assert (
        by_table["registry"].compaction.files_removed,
        by_table["registry"].compaction.files_added,
    ) == (3, 1)
    # Compacted files vacuumed from disk; the other date and the skipped table as written.
    assert _on_disk(cfg, "scores", f"event_date={D1}") == 1
    assert _on_disk(cfg, "scores", f"event_date={D2}") == 4
    assert _on_disk(cfg, "registry") == 1
    assert _on_disk(cfg, "alerts") == 2
    assert (by_table["scores"].vacuumed, by_table["registry"].vacuumed) == (4, 3)
    for table, rows in written.items():
        assert _rows(cfg, table) == sorted(rows)
    assert (Path(io.table_path(cfg, "exports")) / "part-0.parquet").exists()

    record = DeltaTable(io.table_path(cfg, "maintenance")).to_pyarrow_table().to_pylist()
    got = {
        (r["table_name"], r["run_date"], r["files_removed"], r["vacuumed_files"]) for r in record
    }
    assert got == {("registry", D1, 3, 3), ("scores", D1, 4, 4)}
    assert {r["scope"] for r in record} == {"all", f"event_date IN (DATE'{D1}')"}

    # Re-run of the date: nothing left to compact, one row per table and date.
    maintain.run(spark, cfg, RunContext("maintain", D1))
    record = DeltaTable(io.table_path(cfg, "maintenance")).to_pyarrow_table().to_pylist()
    keys = [(r["table_name"], r["run_date"]) for r in record]
    assert sorted(keys) == [("maintenance", D1), ("registry", D1), ("scores", D1)]
    assert all(r["files_removed"] == 0 for r in record if r["table_name"] != "maintenance")
    for table, rows in written.items():
        assert _rows(cfg, table) == sorted(rows)


def test_maintain_refuses_a_retention_delta_would_refuse_before_touching_a_table(
    spark: SparkSession, lake: tuple[Config, dict[str, list]]
) -> None:
    cfg, _ = lake
    with pytest.raises(ConfigError, match=r"maintenance\.vacuum_retention_hours=0"):
        maintain.run(spark, cfg, RunContext("maintain", D1))
    assert (_on_disk(cfg, "scores", f"event_date={D1}"), _on_disk(cfg, "registry")) == (4, 3)
    assert maintain.main(["--config", "conf/transactions.yaml", "--set",
                          f"lakehouse={cfg.lakehouse}", "--set",
                          "maintenance.vacuum_retention_hours=1"]) == ConfigError.exit_code  # fmt: skip
