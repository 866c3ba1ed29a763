"""The volume check: a date's row count must lie within the tolerance of the usual volume.

The usual volume is the median validated count of earlier successful runs; the bounds
here are worked out by hand from the rows the test writes, not from the runner.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.validate import main
from lakehound import io
from tests.validation.conftest import argv, good_lines, tx_config, write_csv

HISTORY = {"2024-01-01": 40, "2024-01-02": 50, "2024-01-03": 60}  # median 50
TOLERANCE = "validation.volume_tolerance=10"  # usual range: [50 / 10, 50 * 10] = [5, 500]


def _day(tmp_path: Path, day: str, n: int, start: int) -> None:
    write_csv(tmp_path / "raw", day, good_lines(n, day=day, start=start))


def test_volume_against_history(spark: SparkSession, tmp_path: Path) -> None:
    start = 0
    for day, n in HISTORY.items():
        _day(tmp_path, day, n, start)
        start += n
        assert main(argv(tmp_path, TOLERANCE, date=day)) == 0

    _day(tmp_path, "2024-01-04", 3, start)  # 3 < 5: a feed that mostly went missing
    _day(tmp_path, "2024-01-05", 20, start + 100)  # within [5, 500]
    assert main(argv(tmp_path, TOLERANCE, date="2024-01-04")) == 3
    assert main(argv(tmp_path, TOLERANCE, date="2024-01-05")) == 0
    # With the check off, the small day is an ordinary run.
    assert main(argv(tmp_path, "validation.volume_tolerance=null", date="2024-01-04")) == 0

    cfg = tx_config(tmp_path)
    runs = {str(r["event_date"]): r for r in io.read_table(spark, cfg, "validation_runs").collect()}
    assert runs["2024-01-05"]["success"] and runs["2024-01-05"]["validated"] == 20
    row_count = next(
        e
        for e in runs["2024-01-05"]["expectations"]
        if e["expectation"] == "expect_table_row_count_to_be_between"
    )
    assert '"min_value": 5' in row_count["expected"]
    assert (
        '"max_value": 501' in row_count["expected"] or '"max_value": 500' in row_count["expected"]
    )
    # Every written row is accounted for: 40 + 50 + 60 + 3 + 20, nothing twice.
    validated = io.read_table(spark, cfg, "validated")
    assert validated.count() == sum(HISTORY.values()) + 3 + 20
    assert validated.select("transaction_id").distinct().count() == validated.count()
    assert validated.where(F.col(io.DATE_COL) == "2024-01-04").count() == 3
