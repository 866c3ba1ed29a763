"""LakeHound on Airflow: the README's spark-submit commands, one task per job.

Daily (``lakehound_daily``): validate -> featurize -> score -> [evaluate, drift] ->
maintain (compaction and VACUUM) for the run's logical date. Weekly
(``lakehound_weekly``): train -> evaluate -> promote. Every task runs
``spark-submit jobs/<job>.py --config conf/<dataset>.yaml --date <ds>``; each job
replaces exactly that date's rows (Delta replaceWhere / MERGE), so retries, re-runs and
backfills (``catchup``) never duplicate output.

Deploy-time settings are Airflow Variables (defaults in brackets):
``lakehound_home`` [the repo containing this file], ``lakehound_config``
[conf/transactions.yaml], ``lakehound_sets`` [extra ``--set k=v`` list, space separated],
``lakehound_spark_submit`` [``<home>/.venv/bin/spark-submit`` if it exists, else the
connection's ``spark-binary`` found on PATH], ``lakehound_python`` [``<home>/.venv/bin/python``
if it exists; Spark's driver and workers run it], and the Spark connection
``lakehound_spark`` (conn_type spark; host = master, e.g. ``local[2]`` or
``spark://HOST:7077``).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Variable

HOME = Variable.get("lakehound_home", default=str(Path(__file__).resolve().parent.parent))
CONFIG = Variable.get("lakehound_config", default="conf/transactions.yaml")
SETS = Variable.get("lakehound_sets", default="").split()
CONN_ID = os.environ.get("LAKEHOUND_SPARK_CONN", "lakehound_spark")
_VENV_BIN = Path(HOME) / ".venv" / "bin"


def _default(path: Path) -> str:
    return str(path) if path.exists() else ""


# The provider only takes a bare binary name from the connection; a full path is
# allowed as the operator's spark_binary, so the project's own spark-submit is used.
SPARK_SUBMIT = Variable.get("lakehound_spark_submit", default=_default(_VENV_BIN / "spark-submit"))
PYTHON = Variable.get("lakehound_python", default=_default(_VENV_BIN / "python"))
# Jobs that exist in this checkout; a DAG never schedules a missing job.
JOBS = {p.stem for p in (Path(HOME) / "jobs").glob("*.py")}

DEFAULT_ARGS = {
    "owner": "lakehound",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=5),
}


def _submit(job: str, dag: DAG, trigger_rule: str = "all_success") -> SparkSubmitOperator:
    args = ["--config", f"{HOME}/{CONFIG}", "--date", "{{ ds }}"]
    for item in SETS:
        args += ["--set", item]
    return SparkSubmitOperator(
        task_id=job,
        dag=dag,
        trigger_rule=trigger_rule,
        conn_id=CONN_ID,
        application=f"{HOME}/jobs/{job}.py",
        application_args=args,
        name=f"lakehound-{job}-{{{{ ds }}}}",
        # Jobs import lakehound/, udfs/ and schemas/ from the checkout (on a cluster,
        # ship dist/lakehound.zip with py_files instead, as in the README).
        env_vars={
            "PYTHONPATH": HOME,
            "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
            # pyspark's launcher finds Spark, and Spark its Python, through these.
            **({"PYSPARK_PYTHON": PYTHON, "PYSPARK_DRIVER_PYTHON": PYTHON} if PYTHON else {}),
        },
        spark_binary=SPARK_SUBMIT or None,
        # Spark's INFO chatter would be re-logged line by line by the task; the jobs'
        # own progress lines stay (they log at INFO through their own logger).
        conf={"spark.log.level": "WARN"},
        py_files=os.environ.get("LAKEHOUND_PY_FILES") or None,
    )


with DAG(
    "lakehound_daily",
    schedule="@daily",
    start_date=dt.datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lakehound"],
) as daily:
    chain = [_submit(j, daily) for j in ("validate", "featurize", "score")]
    chain[0] >> chain[1] >> chain[2]
    tails = [_submit(tail, daily) for tail in ("evaluate", "drift") if tail in JOBS]
    for t in tails:
        chain[2] >> t
    if "maintain" in JOBS:
        # Last, once the day's readers are done: compaction and VACUUM of the date. It
        # runs even if evaluate or drift failed; the day's files need it all the same.
        upkeep = _submit("maintain", daily, trigger_rule="all_done")
        for t in tails or chain[2:]:
            t >> upkeep

with DAG(
    "lakehound_weekly",
    schedule="@weekly",
    start_date=dt.datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lakehound"],
) as weekly:
    train = _submit("train", weekly)
    if "evaluate" in JOBS:
        ev = _submit("evaluate", weekly)
        train >> ev
        if "promote" in JOBS:
            ev >> _submit("promote", weekly)
