"""The daily DAG for real: ``airflow dags test`` from .venv-airflow against local Spark.

Airflow 3 runs every task of ``lakehound_daily`` (validate -> featurize -> score ->
evaluate, drift -> maintain) as a SparkSubmitOperator calling the project's
spark-submit, on a copy of the small test lakehouse from which the run date's rows were deleted first.
The date's outputs are then checked against the raw CSV (counted with plain Python)
and the tables read with ``deltalake``; a second ``dags test`` of the same date (its
writing tasks; evaluate, drift and maintain, already checked, are marked successful to
save three JVM start-ups) must leave every count unchanged (idempotent re-run).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehound import io
from lakehound.config import load_config
from tests.conftest import require

from .conftest import ROOT, OpsLakehouse, table

pytestmark = pytest.mark.integration

AIRFLOW = ROOT / ".venv-airflow" / "bin" / "airflow"
DAG = "lakehound_daily"


def _airflow(env: dict[str, str], *args: str, log: Path) -> None:
    with log.open("ab") as fh:
        proc = subprocess.run(
            [str(AIRFLOW), *args], env=env, stdout=fh, stderr=subprocess.STDOUT, check=False
        )
    assert proc.returncode == 0, f"airflow {' '.join(args)} exited {proc.returncode}; see {log}"


def _raw_ids(raw: Path, day: str) -> Counter[str]:
    ids: Counter[str] = Counter()
    for part in (raw / f"event_date={day}").glob("*.csv"):
        with part.open(newline="", encoding="utf-8") as fh:
            ids.update(row["transaction_id"] for row in csv.DictReader(fh))
    return ids


@pytest.fixture(scope="session")
def airflow_venv() -> Path:
    # Session-scoped and listed first, so a missing venv fails before Spark and the
    # shared lakehouse are set up.
    return require(AIRFLOW, "create .venv-airflow with `make airflow-setup` (part of `make test`)")


def test_daily_dag_runs_one_date_idempotently(
    airflow_venv: Path, spark: SparkSession, ops_lakehouse: OpsLakehouse, tmp_path: Path
) -> None:
    started = time.monotonic()
    # A private copy: the Airflow runs rewrite the date's rows and other tests read
    # the shared lakehouse's versions.
    src = ops_lakehouse.cfg
    lakehouse, raw = tmp_path / "lakehouse", tmp_path / "raw"
    shutil.copytree(src.lakehouse, lakehouse)
    shutil.copytree(src.input.path, raw)
    sets = [
        o for o in ops_lakehouse.overrides if not o.startswith(("lakehouse=", "input.path="))
    ] + [f"lakehouse={lakehouse}", f"input.path={raw}"]
    cfg = load_config(ROOT / "conf" / "transactions.yaml", sets)
    day = str(ops_lakehouse.last_date)

    # Nothing of that date left: whatever is there afterwards the DAG wrote.
    for name in ("validated", "quarantine", "features", "scores", "alerts"):
        spark.sql(f"DELETE FROM delta.`{io.table_path(cfg, name)}` WHERE event_date = DATE'{day}'")
        assert not [r for r in table(cfg, name) if str(r["event_date"]) == day]

    home = tmp_path / "airflow"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        # The deployment the README describes: a spark connection, the project's
        # spark-submit (default variable), the lakehouse and small data via --set.
        "AIRFLOW_CONN_LAKEHOUND_SPARK": '{"conn_type": "spark", "host": "local[2]"}',
        "AIRFLOW_VAR_LAKEHOUND_HOME": str(ROOT),
        "AIRFLOW_VAR_LAKEHOUND_SETS": " ".join(sets),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    log = tmp_path / "airflow.log"
    _airflow(env, "db", "migrate", log=log)

    raw_ids = _raw_ids(raw, day)
    members = {d.id for d in cfg.scoring.detectors}
    counts = []
    for run in (1, 2):
        t0 = time.monotonic()
        skip = [] if run == 1 else ["--mark-success-pattern", "^(evaluate|drift|maintain)$"]
        _airflow(env, "dags", "test", DAG, day, *skip, log=log)
        print(f"airflow dags test {DAG} {day} (run {run}): {time.monotonic() - t0:.0f}s")
        text = log.read_text(errors="replace")
        assert "state=failed" not in text and "upstream_failed" not in text, f"see {log}"

        got = {
            name: [r for r in table(cfg, name) if str(r["event_date"]) == day]
            for name in ("validated", "quarantine", "features", "scores", "alerts")
        }
        # Every raw row of the date validated (the date has no bad rows), once.
        assert Counter(str(r["transaction_id"]) for r in got["validated"]) == raw_ids
        assert not got["quarantine"]
        assert sorted(str(r["event_id"]) for r in got["features"]) == sorted(raw_ids)
        # One score per (event, member) plus the ensemble, no duplicates.
        keys = Counter((str(r["event_id"]), str(r["detector"])) for r in got["scores"])
        assert set(keys.values()) == {1}
        assert set(keys) == {(e, d) for e in raw_ids for d in members | {"ensemble"}}
        # Alerts are exactly the ensemble rows at or above the configured severity.
        want_alerts = {
            str(r["event_id"])
            for r in got["scores"]
            if r["detector"] == "ensemble" and r["severity"] >= cfg.scoring.alert_severity  # type: ignore[operator]
        }
        assert Counter(str(r["event_id"]) for r in got["alerts"]) == Counter(want_alerts)
        # evaluate and drift ran for the date too, and maintain after them: one row per
        # table for the date, the compacted date's rows unchanged (checked above).
        assert table(cfg, "evaluations") and table(cfg, "drift")
        upkeep = {str(r["table_name"]) for r in table(cfg, "maintenance")
                  if str(r["run_date"]) == day}  # fmt: skip
        assert {"validated", "features", "scores", "alerts"} <= upkeep
        counts.append({name: len(rows) for name, rows in got.items()})
    assert counts[0] == counts[1]

    elapsed = time.monotonic() - started
    print(f"airflow integration test: {elapsed:.0f}s")
