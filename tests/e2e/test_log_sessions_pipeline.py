"""The batch pipeline on generated application logs featurized by session
(``features.source=log_sessions``, conf/logs.yaml's ``features.sessions``: the sshd
lines grouped by user) and scored by the configured detectors."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from jobs import generate, pipeline
from lakehound.cli import RunContext
from lakehound.config import Config

pytestmark = pytest.mark.slow


def _table(cfg: Config, name: str) -> list[dict[str, object]]:
    return DeltaTable(str(Path(cfg.lakehouse) / cfg.dataset / name)).to_pyarrow_table().to_pylist()


def test_logs_by_session_are_featurized_and_scored(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg(
        "logs",
        "generate.days=1",
        "generate.logs.hosts=3",
        "features.source=log_sessions",
    )
    assert cfg.features.sessions is not None
    generate.run(spark, cfg, RunContext("generate", None))
    pipeline.run(spark, cfg, RunContext("pipeline", None))

    # Expected sessions: the distinct keys the configured regex finds in the validated
    # rows' text, found here with Python's re over every string field.
    key = re.compile(cfg.features.sessions.key_pattern)
    users = {
        m.group(1)
        for row in _table(cfg, "validated")
        for v in row.values()
        if isinstance(v, str)
        for m in key.finditer(v)
    }
    features = _table(cfg, "features")
    assert len(users) > 10
    assert {r["entity_id"] for r in features} == users
    assert len(features) == len(users)
    # Every session's length is at least one line, and the ensemble scores each once.
    assert min(r["n_events"] for r in features) >= 1.0  # type: ignore[type-var]
    ensemble = [r for r in _table(cfg, "scores") if r["detector"] == "ensemble"]
    assert sorted(r["event_id"] for r in ensemble) == sorted(r["event_id"] for r in features)
