"""The batch pipeline on the other generated sources: application logs (JSON lines) and
machine sensors (Parquet), through their own contracts, features and detectors.

Expected counts come from the raw files (plain Python / pyarrow), the outputs are read
with the ``deltalake`` package, not Spark.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from jobs import generate, pipeline
from lakehound.cli import RunContext
from lakehound.config import Config

pytestmark = pytest.mark.slow

SOURCES = {
    "logs": ["generate.days=2", "generate.logs.hosts=4"],
    "sensors": ["generate.days=2", "generate.sensors.machines=2"],
}


def _raw_count(root: Path) -> int:
    # Spark's writers leave .crc and _SUCCESS files beside the data files.
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))]
    if any(p.suffix == ".parquet" for p in files):
        return sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    n = 0
    for part in files:
        with part.open(encoding="utf-8") as fh:
            n += sum(1 for line in fh if line.strip())
    return n


def _table(cfg: Config, name: str) -> list[dict[str, object]]:
    return DeltaTable(str(Path(cfg.lakehouse) / cfg.dataset / name)).to_pyarrow_table().to_pylist()


@pytest.mark.parametrize("dataset", sorted(SOURCES))
def test_source_pipeline_nothing_lost_and_idempotent(
    spark: SparkSession, make_cfg: Callable[..., Config], dataset: str
) -> None:
    cfg = make_cfg(dataset, *SOURCES[dataset])
    generate.run(spark, cfg, RunContext("generate", None))
    raw = _raw_count(Path(cfg.input.path))
    assert raw > 0

    summary = pipeline.run(spark, cfg, RunContext("pipeline", None))
    validated, quarantined = _table(cfg, "validated"), _table(cfg, "quarantine")
    assert summary["rows_in"] == raw
    assert len(validated) + len(quarantined) == raw

    # One ensemble score per feature row (a log window or a series step), once each,
    # and one row per member detector beside it.
    features = _table(cfg, "features")
    scores = _table(cfg, "scores")
    ensemble = [r for r in scores if r["detector"] == "ensemble"]
    assert len(ensemble) == len(features) > 0
    assert len({r["event_id"] for r in ensemble}) == len(ensemble)
    members = {d.id for d in cfg.scoring.detectors}
    assert {r["detector"] for r in scores} == members | {"ensemble"}
    assert len(scores) == len(ensemble) * (len(members) + 1)
    alerts = {r["event_id"] for r in _table(cfg, "alerts")}
    assert alerts == {
        r["event_id"] for r in ensemble if r["severity"] >= cfg.scoring.alert_severity
    }  # type: ignore[operator]

    before = {t: len(_table(cfg, t)) for t in ("validated", "quarantine", "features", "scores")}
    pipeline.run(spark, cfg, RunContext("pipeline", None))
    assert {t: len(_table(cfg, t)) for t in before} == before
