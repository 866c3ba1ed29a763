"""Table health before every write (issue 26, defects 1, 7 and 13).

A Delta table whose log is gone, has a gap or cannot be replayed while its data files
are still on disk must never be written to: a write would start a new table (or a new
version) over the old rows and drop them. Each test breaks a real Delta table on disk
the way the fault probe did and checks the refusal, that nothing was written, and the
``jobs.maintain --check`` report.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession

from jobs import maintain, validate
from lakehound import io
from lakehound.config import Config, load_config
from lakehound.errors import StorageError

ROOT = Path(__file__).resolve().parent.parent
D1, D2, D3 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)


def _rows(spark: SparkSession, day: dt.date, n: int) -> DataFrame:
    return spark.createDataFrame(
        [(f"e{day:%d}-{i}", float(i), day) for i in range(n)],
        "event_id string, value double, event_date date",
    )


def _log(cfg: Config, table: str) -> Path:
    return Path(io.table_path(cfg, table)) / "_delta_log"


def _data_files(cfg: Config, table: str) -> list[Path]:
    return sorted(Path(io.table_path(cfg, table)).rglob("*.parquet"))


@pytest.fixture(scope="module")
def built(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Path]:
    """``scores`` with three versions (D1+D2 at 0, D3 at 1, D2 again at 2) and
    ``alerts`` with one, written once; each test breaks its own copy."""
    root = tmp_path_factory.mktemp("built")
    cfg = load_config(
        ROOT / "conf" / "transactions.yaml",
        [f"lakehouse={root}", "spark.shuffle_partitions=2"],
    )
    io.replace_dates(_rows(spark, D1, 3).unionByName(_rows(spark, D2, 2)), cfg, "scores", [D1, D2])
    io.replace_dates(_rows(spark, D3, 4), cfg, "scores", [D3])
    io.replace_dates(_rows(spark, D2, 5), cfg, "scores", [D2])
    io.replace_dates(_rows(spark, D1, 2), cfg, "alerts", [D1])
    return cfg, root / "transactions"


@pytest.fixture
def cfg(make_cfg: Callable[..., Config], built: tuple[Config, Path]) -> Config:
    cfg = make_cfg("transactions")
    shutil.copytree(built[1], Path(cfg.lakehouse) / "transactions")
    return cfg


def test_deleted_first_entry_refuses_and_keeps_the_files(spark: SparkSession, cfg: Config) -> None:
    """Defect 1: the first commit's JSON deleted (its .crc left): on main the write
    created a new table over the directory and dropped the other dates' rows."""
    (_log(cfg, "scores") / f"{0:020d}.json").unlink()
    files = _data_files(cfg, "scores")
    with pytest.raises(StorageError) as info:
        io.replace_dates(_rows(spark, D3, 4), cfg, "scores", [D3])
    message = str(info.value)
    assert "transactions.scores" in message and io.table_path(cfg, "scores") in message
    assert "missing for version(s) 0 of 0..2" in message and "\n" not in message
    assert _data_files(cfg, "scores") == files, "no file written or removed"
    assert not (_log(cfg, "scores") / f"{0:020d}.json").exists(), "no new table created"
    # Readers are refused the same way instead of being told the table does not exist.
    with pytest.raises(StorageError):
        io.read_table(spark, cfg, "scores")


def test_deleted_latest_entry_is_a_gap(spark: SparkSession, cfg: Config) -> None:
    """Defect 13: the latest commit's JSON deleted (its .crc left): on main the job took
    version 1 as the latest and committed another version 2 over the gap."""
    (_log(cfg, "scores") / f"{2:020d}.json").unlink()
    with pytest.raises(StorageError, match=r"version\(s\) 2 of 0\.\.2"):
        io.replace_dates(_rows(spark, D3, 1), cfg, "scores", [D3])
    assert not (_log(cfg, "scores") / f"{2:020d}.json").exists()


def test_deleted_middle_entry_is_a_gap(spark: SparkSession, cfg: Config) -> None:
    (_log(cfg, "scores") / f"{1:020d}.json").unlink()
    (_log(cfg, "scores") / f".{1:020d}.crc.crc").unlink(missing_ok=True)
    with pytest.raises(StorageError, match=r"version\(s\) 1 of 0\.\.2"):
        io.append(_rows(spark, D3, 1), cfg, "scores")


def test_no_log_at_all_with_data_files(spark: SparkSession, cfg: Config) -> None:
    shutil.rmtree(_log(cfg, "scores"))
    with pytest.raises(StorageError, match="data files but the Delta log"):
        io.overwrite(_rows(spark, D2, 1), cfg, "scores")
    with pytest.raises(StorageError):
        io.table_exists(spark, cfg, "scores")
    assert not _log(cfg, "scores").exists()


def test_corrupt_entry_is_unreadable(spark: SparkSession, cfg: Config) -> None:
    (_log(cfg, "scores") / f"{2:020d}.json").write_text('{"add": {"path": "x.parq')
    health = io.table_health(spark, io.table_path(cfg, "scores"), "transactions.scores")
    assert health.state == io.BROKEN and health.problem.startswith("Delta log unreadable")


def test_healthy_and_absent(spark: SparkSession, cfg: Config) -> None:
    path = io.table_path(cfg, "labels")
    assert io.table_health(spark, path, "s").state == io.ABSENT
    Path(path).mkdir(parents=True)  # an empty directory holds no rows to lose
    assert io.table_health(spark, path, "s").state == io.ABSENT
    path = io.table_path(cfg, "scores")
    health = io.table_health(spark, path, "s")
    assert (health.state, health.version) == (io.OK, 2)
    assert io.read_table(spark, cfg, "scores").count() == 3 + 4 + 5


def _argv(cfg: Config, *extra: str) -> list[str]:
    return [
        "--config", "conf/transactions.yaml", "--set", f"lakehouse={cfg.lakehouse}",
        "--set", "spark.shuffle_partitions=2", *extra,
    ]  # fmt: skip


def test_maintain_check_reports_every_table(
    spark: SparkSession, cfg: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    assert maintain.main([*_argv(cfg), "--check"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"ok     transactions.alerts {io.table_path(cfg, 'alerts')}: version 0",
        f"ok     transactions.scores {io.table_path(cfg, 'scores')}: version 2",
    ]
    (_log(cfg, "scores") / f"{2:020d}.json").unlink()
    assert maintain.main([*_argv(cfg), "--check"]) == StorageError.exit_code == 8
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1].startswith("broken transactions.scores")
    assert "1 of 2 tables broken: transactions.scores" in captured.err
    # The upkeep itself refuses too, before compacting any table.
    assert maintain.main(_argv(cfg)) == 8
    assert len(list(_log(cfg, "alerts").glob("*.json"))) == 1, "alerts not compacted either"


def test_unwritable_lakehouse_fails_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Defect 7: on main this was found by the first write, minutes in, as tracebacks."""
    start = time.monotonic()
    code = validate.main(
        ["--config", "conf/transactions.yaml", "--set", "lakehouse=/proc/x",
         "--set", f"input.path={tmp_path}", "--date", "2024-01-02"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 8
    assert err[-1].startswith("lakehound validate: StorageError: lakehouse /proc/x/transactions")
    assert "not writable" in err[-1]
    assert time.monotonic() - start < 5
