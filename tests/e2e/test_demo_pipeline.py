"""The demo, small: generate -> pipeline, twice, read back by another Delta reader.

Expected counts come from outside the pipeline: the raw CSV lines are counted with
plain Python, the tables are read with the ``deltalake`` package (no Spark).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession
from sklearn.metrics import roc_auc_score

from jobs import generate, pipeline
from lakehound.cli import RunContext
from lakehound.config import Config

pytestmark = pytest.mark.slow

SMALL = ["generate.accounts=120", "generate.merchants=40", "generate.days=9", "train.train_days=7"]


def _raw_rows(root: Path) -> dict[str, int]:
    """transaction_id -> occurrences, over every CSV part file under root."""
    seen: dict[str, int] = {}
    for part in root.rglob("*.csv"):
        with part.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                seen[row["transaction_id"]] = seen.get(row["transaction_id"], 0) + 1
    return seen


def _table(cfg: Config, name: str) -> list[dict[str, object]]:
    path = Path(cfg.lakehouse) / cfg.dataset / name
    return DeltaTable(str(path)).to_pyarrow_table().to_pylist()


def test_demo_twice_same_counts_nothing_lost(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg("transactions", *SMALL)
    generate.run(spark, cfg, RunContext("generate", None))
    raw = _raw_rows(Path(cfg.input.path))
    assert raw and all(n == 1 for n in raw.values())

    first = pipeline.run(spark, cfg, RunContext("pipeline", None))
    scores = _table(cfg, "scores")
    ensemble = [r for r in scores if r["detector"] == "ensemble"]
    validated = {r["transaction_id"] for r in _table(cfg, "validated")}
    quarantined = _table(cfg, "quarantine")

    # Nothing lost: every raw row is validated or quarantined, and every validated
    # row is scored exactly once by the ensemble and once by each member.
    assert len(validated) + len(quarantined) == len(raw)
    assert sorted(r["event_id"] for r in ensemble) == sorted(validated)
    members = {r["detector"] for r in scores} - {"ensemble"}
    assert members == {d.id for d in cfg.scoring.detectors}
    assert len(scores) == len(ensemble) * (len(members) + 1)
    for r in scores:
        assert 0.0 <= r["severity"] <= 100.0  # type: ignore[operator]

    # The alerts are the ensemble rows at or above the configured severity.
    alerts = _table(cfg, "alerts")
    expected = {r["event_id"] for r in ensemble if r["severity"] >= cfg.scoring.alert_severity}  # type: ignore[operator]
    assert {r["event_id"] for r in alerts} == expected
    assert first["rows_in"] == len(raw)

    # The injected anomalies rank far above chance (scikit-learn's ROC-AUC over the
    # ensemble severity), and alerts are much richer in them than the input.
    labels = {r["transaction_id"] for r in _table(cfg, "labels") if r["is_anomaly"]}
    y = [r["event_id"] in labels for r in ensemble]
    assert roc_auc_score(y, [r["severity"] for r in ensemble]) > 0.8
    hits = labels & {r["event_id"] for r in alerts}
    assert len(hits) / len(alerts) > 3 * len(labels) / len(ensemble)

    # Re-running replaces, never duplicates: same counts in every output table.
    before = {
        t: len(_table(cfg, t)) for t in ("validated", "quarantine", "features", "scores", "alerts")
    }
    pipeline.run(spark, cfg, RunContext("pipeline", None))
    after = {t: len(_table(cfg, t)) for t in before}
    assert after == before
