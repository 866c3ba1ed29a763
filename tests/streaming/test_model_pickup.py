"""A model promoted while the stream runs is scored from the next micro-batch on.

The scorer under test is the very object ``jobs.stream`` hands to ``foreachBatch``;
two of its calls stand for two micro-batches of one running query, with a retrain and
a promotion in between. Marked integration because it shares the trained lakehouse
(a featurize and a train run) with the other streaming integration tests.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from jobs import train
from lakehound import models
from lakehound.cli import RunContext
from lakehound.config import load_config
from lakehound.streaming.batch import BatchScorer
from schemas.transactions import TRANSACTIONS
from tests.streaming.conftest import (
    ROOT,
    STREAM_START,
    lakehouse_copy,
    make_events,
    stream_overrides,
)

pytestmark = pytest.mark.integration


def _batch(spark: SparkSession, events: list[dict[str, object]]):  # type: ignore[no-untyped-def]
    rows = [(json.dumps(e), f"kafka:t:0:{e['transaction_id']}") for e in events]
    return spark.createDataFrame(rows, "payload string, source string")


def test_promoted_model_is_used_from_the_next_batch_without_restart(
    spark: SparkSession, trained_lakehouse: Path, tmp_path: Path
) -> None:
    root = lakehouse_copy(trained_lakehouse, tmp_path)
    cfg = load_config(ROOT / "conf" / "transactions.yaml", stream_overrides(root))
    detectors = [d.id for d in cfg.scoring.detectors]
    before = {d: models.resolve(spark, cfg, d).version for d in detectors}

    scorer = BatchScorer(cfg, TRANSACTIONS, query_run="pickup")
    scorer(_batch(spark, make_events("A", 12)), 0)

    # A retrain registers candidates (production exists); promote them by hand, as
    # jobs/promote.py does when they win.
    train.run(spark, cfg, RunContext("train", None))
    after = {d: models.candidates(spark, cfg, d)[0].version for d in detectors}
    assert all(after[d] != before[d] for d in detectors)
    for d in detectors:
        models.set_status(spark, cfg, d, after[d], "production")

    later = STREAM_START + dt.timedelta(hours=2)
    scorer(_batch(spark, make_events("B", 12, start=later, seed=5)), 1)

    rows = DeltaTable(str(root / "lakehouse" / cfg.dataset / "scores")).to_pyarrow_table()
    by_event: dict[str, dict[str, str]] = {}
    for r in rows.to_pylist():
        if r["detector"] in detectors:
            by_event.setdefault(str(r["event_id"]), {})[str(r["detector"])] = r["model_version"]
    assert {e for e in by_event if e.startswith("A")} == {f"A{i}" for i in range(12)}
    assert {e for e in by_event if e.startswith("B")} == {f"B{i}" for i in range(12)}
    for event, versions in by_event.items():
        assert versions == (before if event.startswith("A") else after), event
