"""The whole loop on small generated data: train (tuned) -> score -> evaluate ->
feedback -> retrain (candidate, confirmed anomalies out) -> promote -> drift."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from sklearn.metrics import average_precision_score, roc_auc_score

from jobs import drift, evaluate, feedback, generate, pipeline, promote, train
from lakehound import io, models
from lakehound.cli import RunContext
from lakehound.config import Config

pytestmark = pytest.mark.slow

SMALL = ["generate.accounts=120", "generate.merchants=40", "generate.days=9", "train.train_days=7"]
# The demo's two detectors plus the semi-supervised member, trained on the labels.
DETECTORS = (
    "scoring.detectors=[{name: isolation_forest, params: {n_estimators: 100, max_samples: 256}},"
    " {name: zscore, threshold: {policy: static, value: 4.0}}, {name: supervised}]"
)


def test_lifecycle_loop(spark: SparkSession, make_cfg: Callable[..., Config]) -> None:
    cfg = make_cfg("transactions", *SMALL, DETECTORS)
    generate.run(spark, cfg, RunContext("generate", None))
    pipeline.run(spark, cfg, RunContext("pipeline", None))

    # First training: production, tuned on the labels table (generated data has labels).
    reg = io.read_table(spark, cfg, "models").collect()
    assert {r["status"] for r in reg} == {"production"}
    assert len({r["version"] for r in reg}) == 1  # one version per run pins the ensemble
    iforest = next(r for r in reg if r["detector"] == "isolation_forest")
    assert iforest["metrics"]["tuned"] == 1.0 and iforest["training_table_version"] >= 0

    # Evaluation of what was scored, checked against scikit-learn on the same rows.
    res = evaluate.run(spark, cfg, RunContext("evaluate", None))
    scores = io.read_table(spark, cfg, "scores").toPandas()
    labels = io.read_table(spark, cfg, "labels").toPandas().set_index("transaction_id")
    for det in ["isolation_forest", "zscore", "supervised", "ensemble"]:
        s = scores[scores.detector == det]
        y = labels.loc[s.event_id, "is_anomaly"].astype(int).to_numpy()
        row = res[(res.detector == det) & (res.segment == "all")].iloc[0]
        assert row["pr_auc"] == pytest.approx(average_precision_score(y, s.raw_score))
        assert row["roc_auc"] == pytest.approx(roc_auc_score(y, s.raw_score))
        flagged = s.is_anomaly.to_numpy()
        assert row["tp"] == int(np.sum(flagged & (y == 1)))
        assert row["alerts_per_day"] == pytest.approx(flagged.sum() / s.event_date.nunique())
    assert {"point", "contextual", "collective"} <= set(res.segment)
    evaluate.run(spark, cfg, RunContext("evaluate", None))  # re-run replaces
    assert io.read_table(spark, cfg, "evaluations").count() == len(res)

    # Feedback: analysts confirm three alerts; retraining leaves them out.
    alerts = [r["event_id"] for r in io.read_table(spark, cfg, "alerts").limit(3).collect()]
    for e in alerts:
        feedback.record(spark, cfg, e, "true_positive", "alice")
    feedback.record(spark, cfg, alerts[0], "true_positive", "alice")  # MERGE, no duplicate
    assert io.read_table(spark, cfg, "feedback").count() == 3

    new = train.run(spark, cfg, RunContext("train", None))
    assert {m.status for m in new} == {"candidate"}
    decisions = promote.run(spark, cfg, RunContext("promote", None))
    assert len(decisions) == 3
    rows = io.read_table(spark, cfg, "promotions").collect()
    assert len(rows) == 3 and all(r["candidate_pr_auc"] is not None for r in rows)
    for r in rows:
        assert r["promoted"] == (r["candidate_pr_auc"] > r["production_pr_auc"])
    status = {
        (r["detector"], r["version"]): r["status"]
        for r in io.read_table(spark, cfg, "models").collect()
    }
    assert "candidate" not in status.values()
    assert sum(v == "production" for v in status.values()) == 3

    # Drift: the generated data is stationary, so features are stable.
    out = drift.run(spark, cfg, RunContext("drift", None))
    d = io.read_table(spark, cfg, "drift")
    feats = d.where(F.col("kind") == "feature").collect()
    assert feats and all(r["psi"] is not None for r in feats)
    assert out["rows"] == d.count()
    assert {r["kind"] for r in d.collect()} == {"feature", "score", "alert_rate"}
    assert models.resolve(spark, cfg, "zscore").status == "production"
