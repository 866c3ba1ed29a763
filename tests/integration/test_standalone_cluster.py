"""A real Spark standalone cluster on 127.0.0.1 runs the pipeline via spark-submit.

Starts a master and a worker from the pip-installed Spark, submits the pipeline
with the project shipped as a zip in ``--py-files`` (as on any cluster), reads the
Delta outputs back with another Delta reader (the ``deltalake`` package, no
Spark) and stops both processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakehound.ports import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _wait_for(log: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and needle in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(
        f"'{needle}' not seen in {log}:\n{log.read_text(errors='replace')[-3000:]}"
    )


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen(
            [str(BIN / "spark-class"), *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("standalone")
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    port, ui = free_port(), free_port()
    url = f"spark://127.0.0.1:{port}"
    master = _start(
        ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
         "--webui-port", str(ui)],
        work / "master.log", env,
    )  # fmt: skip
    worker = None
    try:
        _wait_for(work / "master.log", "I have been elected leader", master, 90)
        worker = _start(
            ["org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", "2",
             "--memory", "3g", "--webui-port", str(free_port()), "--work-dir", str(work / "w")],
            work / "worker.log", env,
        )  # fmt: skip
        _wait_for(work / "worker.log", "Successfully registered with master", worker, 90)
        yield url
    finally:
        if worker is not None:
            _stop(worker)
        _stop(master)


def _project_zip(dest: Path) -> Path:
    """The project as a --py-files zip (what `make dist` builds)."""
    out = dest / "lakehound.zip"
    with zipfile.ZipFile(out, "w") as zf:
        for pkg in ("lakehound", "jobs", "udfs", "schemas"):
            for f in (ROOT / pkg).rglob("*.py"):
                zf.write(f, f.relative_to(ROOT))
    return out


def test_pipeline_on_standalone_cluster(cluster: str, tmp_path: Path) -> None:
    from deltalake import DeltaTable

    lakehouse, raw = tmp_path / "lakehouse", tmp_path / "raw"
    sets = [
        f"lakehouse={lakehouse}", f"input.path={raw}", "generate.accounts=150",
        "generate.days=9", "generate.merchants=60", "train.train_days=7",
    ]  # fmt: skip
    set_args = [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    submit = [
        str(BIN / "spark-submit"), "--master", cluster, "--py-files", str(_project_zip(tmp_path)),
        "--conf", "spark.executor.memory=1g", "--conf", "spark.cores.max=2",
        "--conf", "spark.sql.shuffle.partitions=4", "--driver-memory", "1g",
    ]  # fmt: skip
    for job in ("generate", "pipeline"):
        proc = subprocess.run(
            [*submit, str(ROOT / "jobs" / f"{job}.py"), "--config",
             str(ROOT / "conf" / "transactions.yaml"), "--env", "cluster", *set_args],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-4000:]
    assert "LakeHound pipeline summary" in proc.stdout

    labels = DeltaTable(str(lakehouse / "transactions" / "labels")).to_pyarrow_table()
    scores = DeltaTable(str(lakehouse / "transactions" / "scores")).to_pyarrow_table()
    ensemble = scores.filter(scores["detector"].to_numpy(zero_copy_only=False) == "ensemble")
    # Every generated transaction is scored exactly once by the ensemble.
    assert ensemble.num_rows == labels.num_rows
    assert len(set(ensemble["event_id"].to_pylist())) == labels.num_rows
    assert DeltaTable(str(lakehouse / "transactions" / "alerts")).to_pyarrow_table().num_rows > 0
