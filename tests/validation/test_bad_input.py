"""Bad input the fault probe of issue 26 found mishandled (defects 3, 4, 5, 6, 8, 9).

Each case failed on main: a truncated last record accepted with a wrong value, a
dotted header name crashing validation, control characters in keys accepted, a
broken symlink skipped silently, pandas' nanosecond Parquet unreadable, and a key
validated twice by per-date runs. The corpus cases reuse the bad-input corpus'
``Case`` and its classification check (rows in = validated + quarantined).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from jobs import validate as validate_job
from lakehound import io
from lakehound.errors import ContractViolation
from lakehound.validation import validate
from tests.validation.conftest import HEADER, argv, ctx, tx_config, tx_line, write_csv
from tests.validation.test_bad_inputs import GOOD, Case, _csv, _with
from tests.validation.test_bad_inputs import test_classification as classify_case

DAY = "2024-01-02"
JSON_LINES = "".join(
    json.dumps(dict(zip(HEADER.split(","), line.split(","), strict=True))) + "\n" for line in GOOD
).encode()

CASES = [
    # Defect 3: the last line cut inside event_ts, no newline after it.
    Case(
        "truncated_last_record",
        _csv(GOOD) + tx_line(120, event_ts=f"{DAY}T12:34:5").encode(),
        10,
        1,
        {"truncated:event_ts": 1},
    ),
    Case(
        "truncated_to_the_hour",
        _with(tx_line(121, event_ts=f"{DAY}T1"), tx_line(122, event_ts=f"{DAY}T12")),
        10,
        2,
        {"truncated:event_ts": 2},
    ),
    # Defect 4: a dotted name used to end in an UNRESOLVED_COLUMN traceback (exit 1).
    Case(
        "dotted_column_name",
        _csv([x + ",v" for x in GOOD], header=HEADER + ",note.v2"),
        error=ContractViolation,
        message="unknown ['note.v2']",
    ),
    Case("json_lines_as_csv", JSON_LINES, error=ContractViolation, message="schema_drift"),
    Case(
        "dotted_column_allowed",
        _csv([x + ",v" for x in GOOD], header=HEADER + ",note.v2"),
        validated=10,
        overrides=("validation.allow_new_columns=true",),
    ),
    # Defect 6: NUL, tab and escape bytes inside the key.
    Case(
        "control_chars_in_key",
        _with(
            tx_line(123, transaction_id="t\x00123"),
            tx_line(124, transaction_id="t\t124"),
            tx_line(125, transaction_id="t\x1b125"),
        ),
        10,
        3,
        {"control_char:transaction_id": 3},
        overrides=("validation.max_invalid_fraction=0.5",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus(spark: SparkSession, tmp_path: Path, case: Case) -> None:
    classify_case(spark, tmp_path, case)


def test_untruncated_timestamps_still_pass(spark: SparkSession, tmp_path: Path) -> None:
    """The truncation rule must not catch whole values of the formats the feeds use."""
    stamps = [f"{DAY}T12:34:56Z", f"{DAY} 12:34:56", f"{DAY}T12:34:56.5+01:00", f"{DAY}T00:00:00Z"]
    lines = [tx_line(130 + i, event_ts=ts) for i, ts in enumerate(stamps)]
    classify_case(spark, tmp_path, Case("whole", _with(*lines), validated=14))


def test_dotted_column_exits_with_schema_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "raw", DAY, [x + ",v" for x in GOOD], header=HEADER + ",note.v2")
    assert validate_job.main(argv(tmp_path, "validation.volume_tolerance=null")) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("lakehound validate: ContractViolation: blocking expectation")
    assert "note.v2" in err


def test_broken_symlink_is_named_in_a_warning(
    spark: SparkSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 8: the link was skipped without a word; now a WARNING names it and its
    target, and the rows of the readable files are validated as before."""
    folder = write_csv(tmp_path / "raw", DAY, GOOD).parent
    link = folder / "part-1.csv"
    os.symlink(tmp_path / "gone.csv", link)
    cfg = tx_config(tmp_path, "validation.volume_tolerance=null")
    with caplog.at_level(logging.WARNING, logger="lakehound.validation"):
        summary = validate(spark, cfg, ctx(DAY))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"skipping broken symlink {link} -> {tmp_path / 'gone.csv'}" in warnings[0]
    assert (summary.rows_in, summary.validated) == (10, 10)


def test_pandas_nanosecond_parquet(spark: SparkSession, tmp_path: Path) -> None:
    """Defect 9: ``pandas.to_parquet`` writes TIMESTAMP(NANOS); Spark refused the file."""
    stamps = pd.to_datetime(
        [f"{DAY} 00:00:01.123456789", f"{DAY} 12:30:00", f"{DAY} 23:59:59.999999"],
        format="ISO8601",
    )
    frame = pd.DataFrame(
        {
            "transaction_id": ["p1", "p2", "p3"],
            "account_id": ["a1", "a2", "a1"],
            "merchant_id": ["m1", "m2", "m3"],
            "merchant_category": ["grocery"] * 3,
            "amount": [1.5, 20.0, 300.25],
            "currency": ["EUR"] * 3,
            "country": ["DE"] * 3,
            "channel": ["pos"] * 3,
            "event_ts": stamps,
        }
    )
    folder = tmp_path / "raw" / f"event_date={DAY}"
    folder.mkdir(parents=True)
    frame.to_parquet(folder / "part-0.parquet")  # pandas' defaults: nanoseconds
    cfg = tx_config(tmp_path, "validation.volume_tolerance=null", "input.format=parquet")
    summary = validate(spark, cfg, ctx(DAY))
    assert (summary.validated, summary.quarantined) == (3, 0)
    got = {
        r["transaction_id"]: r["event_ts"] for r in io.read_table(spark, cfg, "validated").collect()
    }
    # Spark keeps microseconds: the nanosecond digits are truncated.
    assert got == {
        "p1": dt.datetime(2024, 1, 2, 0, 0, 1, 123456),
        "p2": dt.datetime(2024, 1, 2, 12, 30),
        "p3": dt.datetime(2024, 1, 2, 23, 59, 59, 999999),
    }


def test_per_date_runs_deduplicate_across_dates(spark: SparkSession, tmp_path: Path) -> None:
    """Defect 5: a transaction_id on two dates, validated day by day, was kept twice."""
    d1, d2 = "2024-01-02", "2024-01-03"
    write_csv(tmp_path / "raw", d1, [tx_line(i, day=d1) for i in range(5)])
    again = tx_line(3, day=d2)  # t00003 once more, a day later
    write_csv(tmp_path / "raw", d2, [again, *[tx_line(i, day=d2) for i in range(10, 14)]])
    cfg = tx_config(tmp_path, "validation.volume_tolerance=null")
    validate(spark, cfg, ctx(d1))
    second = validate(spark, cfg, ctx(d2))
    assert (second.validated, second.quarantined) == (4, 1)
    assert second.reason_counts == {"duplicate": 1}
    ids = [r[0] for r in io.read_table(spark, cfg, "validated").select("transaction_id").collect()]
    assert sorted(ids) == sorted({f"t{i:05d}" for i in [*range(5), *range(10, 14)]})
    # A re-run of the second date gives the same answer (its own date is not "earlier").
    assert validate(spark, cfg, ctx(d2)).quarantined == 1
    # Off, the old behaviour: the copy is validated on its own date too.
    off = tx_config(tmp_path, "validation.volume_tolerance=null", "validation.dedup_days=0")
    assert validate(spark, off, ctx(d2)).validated == 5
