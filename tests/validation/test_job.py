"""The validation job end to end: re-runs replace, validation_runs, Data Docs, exit codes,
and the real datasets of ../shared/data against their contracts."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs.validate import main
from lakehound import io
from lakehound.config import load_config
from lakehound.validation import validate
from tests.validation.conftest import ROOT, argv, ctx, good_lines, tx_config, tx_line, write_csv

DAY = "2024-01-02"
DATA = (
    Path("/work/shared/data")
    if Path("/work/shared/data").exists()
    else ROOT.parent / "shared" / "data"
)


def test_rerun_replaces_and_records_run(spark: SparkSession, tmp_path: Path) -> None:
    lines = [*good_lines(8), tx_line(1), tx_line(90, currency="XYZ")]  # 8 ok, 1 dup, 1 bad
    write_csv(tmp_path / "raw", DAY, lines)
    cfg = tx_config(tmp_path, "validation.volume_tolerance=null", "validation.data_docs=true")
    for _ in range(2):
        summary = validate(spark, cfg, ctx(DAY))
        assert (summary.rows_in, summary.validated, summary.quarantined) == (10, 8, 2)
    assert io.read_table(spark, cfg, "validated").count() == 8
    quarantine = io.read_table(spark, cfg, "quarantine").collect()
    assert sorted(tuple(r["reasons"]) for r in quarantine) == [
        ("duplicate",),
        ("not_in_set:currency",),
    ]
    runs = io.read_table(spark, cfg, "validation_runs").collect()
    assert len(runs) == 1  # the second run replaced the first one's row
    run = runs[0]
    assert (run["success"], run["rows_in"], run["validated"], run["quarantined"]) == (
        True,
        10,
        8,
        2,
    )
    by_id = {
        e["expectation"] + (":" + e["column"] if e["column"] else ""): e
        for e in run["expectations"]
    }
    # Observed values are GX's, computed on the 8 validated rows (all amounts 12.50).
    assert by_id["expect_table_row_count_to_be_between"]["observed"] == "8"
    assert float(by_id["expect_column_mean_to_be_between:amount"]["observed"]) == 12.5
    assert run["data_docs"] and Path(run["data_docs"]).is_file()
    pages = list(Path(run["data_docs"]).parent.rglob("*.html"))
    # The rendered validation page names the suite built from the contract.
    assert any("transactions_v1.1.0" in p.read_text(encoding="utf-8") for p in pages)


def test_exit_codes(tmp_path: Path) -> None:
    write_csv(tmp_path / "raw", DAY, [tx_line(i, amount="-1") for i in range(5)])
    assert main(argv(tmp_path, "validation.volume_tolerance=null")) == 3
    assert main(argv(tmp_path, date="2024-02-01")) == 4  # no such partition
    assert main(argv(tmp_path, "validation.no_such_key=1")) == 2


REAL = [
    ("cardtx", 585_177, 585_177),
    # 35 series since the 17 realAWSCloudwatch ones joined (pandas counts 181,653 rows).
    ("nab", 181_653, 181_653),
    ("bgl", 2_000, 2_000),
]


@pytest.mark.quality
@pytest.mark.parametrize(("dataset", "rows", "valid"), REAL, ids=[r[0] for r in REAL])
def test_real_dataset_validates_cleanly(
    spark: SparkSession, tmp_path: Path, dataset: str, rows: int, valid: int
) -> None:
    cfg = load_config(
        ROOT / "conf" / f"{dataset}.yaml",
        [
            f"lakehouse={tmp_path / 'lake'}",
            "validation.data_docs=false",
            "input.path=" + str(_input(dataset)),
        ],
    )
    summary = validate(spark, cfg, ctx(None))
    assert (summary.rows_in, summary.validated, summary.quarantined) == (rows, valid, 0)
    assert summary.success


def _input(dataset: str) -> Path:
    return {
        "cardtx": DATA / "transactions" / "fraud_sim_2018-04_2018-05.parquet",
        "nab": DATA / "nab" / "data",
        "bgl": DATA / "logs" / "BGL" / "BGL_2k.log",
    }[dataset]
