"""The in-process path of the scoring core gives the Spark path's numbers, and its
rows reach the output tables in the same shape."""

from __future__ import annotations

import datetime as dt
import hashlib
import pickle
from collections.abc import Callable
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import Column, DataFrame, SparkSession

from lakehound.config import Config
from lakehound.scoring import (
    Member,
    combine_explanations,
    score_pandas,
    score_wide,
    to_alerts,
    to_scores,
    wide_frame,
)
from udfs.bundle import ModelBundle
from udfs.calibration import Threshold
from udfs.scoring import score_column

FEATURES = ["amount", "hour", "velocity"]


def _member(name: str, params: dict[str, Any], X: np.ndarray, thr: Threshold) -> Member:
    bundle = ModelBundle.fit(name, params, FEATURES, X, thr)
    payload = pickle.dumps(bundle)
    sha = hashlib.sha256(payload).hexdigest()

    def attach(df: DataFrame) -> tuple[DataFrame, Column]:
        return df, score_column(df, payload, sha, FEATURES, 2)

    model: Any = SimpleNamespace(version=f"{name}-v1")
    return Member(name, model, 1.0, bundle.threshold, attach, bundle)


@pytest.mark.slow
@pytest.mark.parametrize("ensemble", ["mean", "max", "weighted"])
def test_pandas_path_matches_spark_path(
    spark: SparkSession, make_cfg: Callable[..., Config], ensemble: str
) -> None:
    rng = np.random.default_rng(5)
    train = rng.normal([50.0, 12.0, 2.0], [10.0, 3.0, 0.5], size=(1000, 3))
    members = [
        _member("robust_zscore", {}, train, Threshold("static", 3.0)),
        _member("isolation_forest", {"n_estimators": 30}, train, Threshold("contamination", 0.05)),
    ]
    if ensemble == "weighted":
        members = [replace(members[0], weight=3.0), replace(members[1], weight=7.0)]
    rows = rng.normal([50.0, 12.0, 2.0], [10.0, 3.0, 0.5], size=(40, 3))
    rows[3] = [95.0, 12.0, 9.0]
    rows[11] = [10.0, 2.0, 0.1]
    rows[20, 1] = np.nan  # imputed for scoring, reported as read
    ts = dt.datetime(2024, 1, 1, 12)
    pdf = pd.DataFrame(rows, columns=FEATURES).assign(
        event_id=[f"e{i}" for i in range(40)], entity_id="a", event_ts=ts, event_date=ts.date()
    )
    cfg = make_cfg(
        "transactions", "scoring.alert_severity=90", f"scoring.ensemble={ensemble}",
        "scoring.top_features=2",
    )  # fmt: skip
    spark_rows = {
        r["event_id"]: r for r in score_wide(spark.createDataFrame(pdf), members, cfg).collect()
    }
    got = score_pandas(pdf, members, cfg)

    assert got.is_alert.sum() >= 1  # the planted rows make the test about alerts too
    combined = 0  # alerts whose explanation merges both members' parts for a feature
    for i, eid in enumerate(pdf["event_id"]):
        want = spark_rows[eid]
        assert got.severity[i] == pytest.approx(want["_ens_severity"], abs=1e-9)
        assert got.flagged_by[i] == list(want["_flagged_by"])
        assert got.contributions[i] == pytest.approx(dict(want["_contributions"]), abs=1e-9)
        # The combined explanation: same arithmetic in the same order, so the same
        # doubles, and the same ranking (ties included).
        want_expl = [
            (e["feature"], e["value"], e["contribution"], e["method"])
            for e in want["_ens_explanation"]
        ]
        assert got.explanation[i] == want_expl
        if not got.is_alert[i]:
            assert want_expl == []  # only the ensemble's alerts are explained
        combined += any("+" in e[3] for e in want_expl)
        for m in members:
            d = got.detectors[m.id]
            assert d.severity[i] == pytest.approx(want[m.id]["severity"], abs=1e-9)
            assert d.raw[i] == pytest.approx(want[m.id]["raw_score"], abs=1e-9)
            assert bool(d.is_anomaly[i]) == want[m.id]["is_anomaly"]
    # max takes one member's parts; mean and weighted merge both on shared features.
    assert combined == 0 if ensemble == "max" else combined >= 1

    ctx: Any = SimpleNamespace(run_id="r1")
    wide = wide_frame(spark, pdf, got, members)
    cols = ["event_id", "detector", "severity", "is_anomaly", "model_version"]
    expected = {
        tuple(r)
        for r in to_scores(wide_frame(spark, pdf, got, members), members, cfg, ctx)
        .select(*cols)
        .collect()
    }
    from_spark = score_wide(spark.createDataFrame(pdf), members, cfg)
    assert {
        (r[0], r[1], round(r[2], 9), r[3], r[4])
        for r in to_scores(from_spark, members, cfg, ctx).select(*cols).collect()
    } == {(r[0], r[1], round(r[2], 9), r[3], r[4]) for r in expected}
    alert_ids = sorted(r["event_id"] for r in to_alerts(wide, members, cfg, ctx).collect())
    assert alert_ids == sorted(pdf["event_id"][got.is_alert])
    assert alert_ids == sorted(
        r["event_id"] for r in to_alerts(from_spark, members, cfg, ctx).collect()
    )


def test_combine_explanations_weights_members_parts_by_hand() -> None:
    a = [("amount", 95.0, 40.0, "max_z_shapley"), ("velocity", 9.0, 20.0, "max_z_shapley")]
    b = [("velocity", 9.0, 30.0, "tree_shap"), ("hour", 12.0, -4.0, "tree_shap")]
    # velocity: 0.25 * 20 + 0.75 * 30; amount: 0.25 * 40; hour: 0.75 * -4.
    assert combine_explanations([(a, 0.25), (b, 0.75)], 3) == [
        ("velocity", 9.0, 27.5, "max_z_shapley+tree_shap"),
        ("amount", 95.0, 10.0, "max_z_shapley"),
        ("hour", 12.0, -3.0, "tree_shap"),
    ]
    # top_k keeps the strongest; a member without explanation or weight adds nothing.
    assert combine_explanations([(a, 0.25), ([], 0.5), (b, 0.0)], 1) == [
        ("amount", 95.0, 10.0, "max_z_shapley")
    ]
    # Equal |parts| keep their first appearance's order (a stable sort, as Spark's).
    tie = [("hour", 12.0, -10.0, "tree_shap"), ("amount", 95.0, 10.0, "tree_shap")]
    assert [e[0] for e in combine_explanations([(tie, 1.0)], 2)] == ["hour", "amount"]
    assert combine_explanations([([], 1.0)], 3) == []


@pytest.mark.parametrize("ensemble", ["weighted", "max"])
def test_score_pandas_ensemble_explanation_adds_up(
    make_cfg: Callable[..., Config], ensemble: str
) -> None:
    rng = np.random.default_rng(6)
    train = rng.normal([50.0, 12.0, 2.0], [10.0, 3.0, 0.5], size=(1000, 3))
    members = [
        replace(_member("zscore", {}, train, Threshold("static", 3.0)), weight=1.0),
        replace(_member("robust_zscore", {}, train, Threshold("static", 3.0)), weight=3.0),
    ]
    rows = np.array([[95.0, 12.0, 3.4], [50.0, 30.0, 2.0], [50.0, 12.0, 2.0]])
    cfg = make_cfg(
        "transactions", "scoring.alert_severity=90", f"scoring.ensemble={ensemble}",
        "scoring.top_features=3",
    )  # fmt: skip
    got = score_pandas(pd.DataFrame(rows, columns=FEATURES), members, cfg)
    assert got.is_alert.tolist() == [True, True, False]
    assert got.explanation[2] == []
    z, rz = got.detectors["zscore"], got.detectors["robust_zscore"]
    for i in (0, 1):
        assert z.is_anomaly[i] and rz.is_anomaly[i]
        if ensemble == "weighted":
            # Weights 1 and 3 normalised: 0.25 and 0.75 of each member's parts.
            weights = [(z, 0.25), (rz, 0.75)]
        else:
            weights = [max([(z, 1.0), (rz, 1.0)], key=lambda d: d[0].severity[i])]
        expected: dict[str, float] = {}
        for d, w in weights:
            for f, _, c, _ in d.explanation[i]:
                expected[f] = expected.get(f, 0.0) + w * c
        parts = {f: c for f, _, c, _ in got.explanation[i]}
        assert parts == pytest.approx(expected, rel=1e-12)
        assert [e[3] for e in got.explanation[i]] == ["max_z_shapley"] * 3
        assert [e[1] for e in got.explanation[i]] == rows[
            i, [FEATURES.index(f) for f in parts]
        ].tolist()
        # Every feature explained, and the z members' base (every feature at its
        # centre) has severity 0: the parts add up to the ensemble's severity.
        assert sum(parts.values()) == pytest.approx(got.severity[i], rel=1e-9)
