"""Reliability of the jobs around the tables (issue 26, defects 2, 11, 14 and 15)."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import SparkSession

from jobs import score, train
from lakehound import io, models
from lakehound.cli import RunContext
from lakehound.config import Config, load_config
from lakehound.errors import InputError, ModelError
from lakehound.session import session_conf

ROOT = Path(__file__).resolve().parent.parent
D1, D2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)
FEATURES = (
    "event_id string, entity_id string, event_ts timestamp, event_date date, a double, b double"
)
ZSCORE = "{name: zscore, features: [a, b], threshold: {policy: contamination, value: 0.1}}"


def _features(spark: SparkSession, cfg: Config, n: int = 40) -> None:
    rng = np.random.default_rng(1)
    rows = [
        (
            f"e{i}",
            f"c{i % 5}",
            dt.datetime(2024, 1, 1, 0, 0, i),
            D1,
            *map(float, rng.normal(size=2)),
        )
        for i in range(n)
    ]
    io.replace_dates(spark.createDataFrame(rows, FEATURES), cfg, "features", [D1])


def test_score_without_features_for_the_date_is_exit_4(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    """Defect 15: on main this went on (to the model registry, or "scored 0 events")."""
    cfg = make_cfg("transactions", f"scoring.detectors=[{ZSCORE}]")
    _features(spark, cfg, 5)
    with pytest.raises(InputError, match=r"no features for 2024-01-02 in transactions\.features"):
        score.run(spark, cfg, RunContext("score", D2))
    assert InputError.exit_code == 4
    assert not io.table_exists(spark, cfg, "scores")


def test_training_registers_all_models_or_none(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    """Defect 11: the second detector fails (supervised without labels) after the first
    was fitted; on main the first was already production, half an ensemble."""
    both = f"scoring.detectors=[{ZSCORE}, {{name: supervised, features: [a, b]}}]"
    cfg = make_cfg("transactions", both, "train.train_days=7")
    _features(spark, cfg)
    with pytest.raises(InputError, match="supervised"):
        train.run(spark, cfg, RunContext("train", None))
    assert not io.table_exists(spark, cfg, "models"), "nothing registered"
    # The re-run (the failing member fixed) registers the run; a second run of the
    # same detector replaces production in the same single commit.
    one = make_cfg("transactions", f"scoring.detectors=[{ZSCORE}]", "train.train_days=7")
    (first,) = train.run(spark, one, RunContext("train", None))
    forced = make_cfg(
        "transactions", f"scoring.detectors=[{ZSCORE}]", "train.train_days=7",
        "train.register_as=production",
    )  # fmt: skip
    (second,) = train.run(spark, forced, RunContext("train", None))
    rows = {r["version"]: r["status"] for r in io.read_table(spark, one, "models").collect()}
    assert rows == {first.version: "archived", second.version: "production"}
    from delta.tables import DeltaTable

    ops = [
        r["operation"]
        for r in DeltaTable.forPath(spark, io.table_path(one, "models")).history().collect()
    ]
    assert ops == ["MERGE", "WRITE"], "one commit per training run"


def _write_original(root: Path) -> None:
    (root / "model.pkl").write_text("original")


def test_copied_lakehouse_uses_its_own_artifacts(
    spark: SparkSession, make_cfg: Callable[..., Config], tmp_path: Path
) -> None:
    """Defect 2: a copy read the original's artifacts by absolute path."""
    original = make_cfg("transactions")
    models.register_artifact(
        spark, original, detector="zscore", version="v1", params={}, features=["a"],
        metrics={}, write=_write_original,
        lineage=models.Lineage("fr", "transactions.features", 0, ""),
    )  # fmt: skip
    copy_root = tmp_path / "copy"
    shutil.copytree(original.lakehouse, copy_root)
    shutil.rmtree(original.lakehouse)  # the original is gone; the copy must not care
    copy = load_config(
        ROOT / "conf" / "transactions.yaml",
        [f"lakehouse={copy_root}", "spark.shuffle_partitions=2"],
    )
    reg = models.resolve(spark, copy, "zscore")
    assert reg.artifact_path == str(copy_root / "transactions" / "_models" / "zscore" / "v1")
    assert reg.read_verified() == b"original"
    (Path(reg.artifact_path) / "model.pkl").write_text("tampered")
    with pytest.raises(ModelError, match="refusing to load"):
        reg.read_verified()


def test_old_absolute_artifact_paths_are_reanchored(make_cfg: Callable[..., Config]) -> None:
    cfg = make_cfg("transactions")
    moved = models.artifact_location(cfg, "/elsewhere/lake/transactions/_models/zscore/v9")
    assert moved == io.table_path(cfg, "_models/zscore/v9")


def test_driver_binds_to_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 14: outside the Makefile (no SPARK_LOCAL_IP) Spark bound the driver,
    block manager and UI to the external interface."""
    settings = load_config(ROOT / "conf" / "transactions.yaml").spark
    monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    conf = session_conf(settings)
    assert (conf["spark.driver.bindAddress"], conf["spark.driver.host"]) == ("127.0.0.1",) * 2
    monkeypatch.setenv("SPARK_LOCAL_IP", "10.1.2.3")
    assert session_conf(settings)["spark.driver.bindAddress"] == "10.1.2.3"
    own = settings.model_copy(update={"conf": {"spark.driver.host": "driver.example"}})
    assert session_conf(own)["spark.driver.host"] == "driver.example"


def test_live_driver_listens_on_loopback_only(spark: SparkSession) -> None:
    port = int(str(spark.conf.get("spark.driver.port")))
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                listening.append(local.rsplit(":", 1)[0])
    assert listening and all(
        a in ("0100007F", "0000000000000000FFFF00000100007F") for a in listening
    )
