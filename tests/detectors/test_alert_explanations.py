"""Alerts carry a readable explanation struct: features with their value, their part of
the severity in points and the attribution method (max-|z| Shapley, TreeSHAP)."""

from __future__ import annotations

import datetime as dt
import hashlib
import pickle
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import Column, DataFrame, SparkSession

from jobs.score import Member, score_wide, to_alerts
from lakehound.config import Config
from udfs.bundle import ModelBundle
from udfs.calibration import Threshold
from udfs.scoring import ensemble_explanation, score_column

FEATURES = ["amount", "hour", "velocity"]


def _member(name: str, params: dict[str, Any], X: np.ndarray, thr: Threshold) -> Member:
    bundle = ModelBundle.fit(name, params, FEATURES, X, thr)
    payload = pickle.dumps(bundle)
    sha = hashlib.sha256(payload).hexdigest()

    def attach(df: DataFrame) -> tuple[DataFrame, Column]:
        return df, score_column(df, payload, sha, FEATURES, 2)

    model: Any = SimpleNamespace(version=f"{name}-v1")
    fn: Callable[[DataFrame], tuple[DataFrame, Column]] = attach
    return Member(name, model, 1.0, bundle.threshold, fn)


def test_alert_explanations_name_the_deviating_feature(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    rng = np.random.default_rng(3)
    train = rng.normal([50.0, 12.0, 2.0], [10.0, 3.0, 0.5], size=(2000, 3))
    members = [
        _member("robust_zscore", {}, train, Threshold("static", 4.0)),
        _member("isolation_forest", {"n_estimators": 50}, train, Threshold("contamination", 0.01)),
    ]
    rows = rng.normal([50.0, 12.0, 2.0], [10.0, 3.0, 0.5], size=(50, 3))
    # velocity 14 sigma out, amount 4.5: IF needs more than one axis beyond the
    # training range (it saturates on a single one).
    rows[7] = [95.0, 12.0, 9.0]
    ts = dt.datetime(2024, 1, 1)
    pdf = pd.DataFrame(rows, columns=FEATURES).assign(
        event_id=[f"e{i}" for i in range(50)], entity_id="a", event_ts=ts, event_date=ts.date()
    )
    cfg = make_cfg("transactions", "scoring.alert_severity=90")
    wide = score_wide(spark.createDataFrame(pdf), members, cfg)
    alerts = to_alerts(wide, members, cfg, SimpleNamespace(run_id="r1")).collect()  # type: ignore[arg-type]
    a = max(alerts, key=lambda r: r["severity"])
    assert a["event_id"] == "e7"
    assert set(a["detectors"]) == {"robust_zscore", "isolation_forest"}
    top = a["explanation"][0]
    assert (top["feature"], top["value"]) in {("velocity", 9.0), ("amount", 95.0)}
    assert 0 < top["contribution"] < 100
    # The ensemble (mean) explains by both members' parts, half each, per feature.
    e7 = wide.where("event_id = 'e7'").first()
    assert e7 is not None
    both = {
        m: {e["feature"]: e for e in e7[m]["explanation"]}
        for m in ("robust_zscore", "isolation_forest")
    }
    shared = [m for m in both if top["feature"] in both[m]]
    assert top["contribution"] == pytest.approx(
        sum(0.5 * both[m][top["feature"]]["contribution"] for m in shared), rel=1e-12
    )
    assert top["method"] == "+".join(sorted(both[m][top["feature"]]["method"] for m in shared))
    assert set(top["method"].split("+")) <= {"max_z_shapley", "tree_shap"}
    # The robust z member: |z| per feature from the training median / MAD, then the
    # Shapley values of their maximum (features leaving the median one at a time),
    # rescaled to the row's severity (the base, every feature at its median, is 0).
    row = wide.where("event_id = 'e7'").select("robust_zscore").first()[0]  # type: ignore[index]
    med = np.median(train, axis=0)
    mad = np.median(np.abs(train - med), axis=0) * 1.482602218505602
    z = np.abs((np.array([95.0, 12.0, 9.0]) - med) / mad)
    lo, mid, hi = np.sort(z)
    shapley = {
        FEATURES[int(np.argmax(z))]: lo / 3 + (mid - lo) / 2 + (hi - mid),
        FEATURES[int(np.argsort(z)[1])]: lo / 3 + (mid - lo) / 2,
    }
    assert row["raw_score"] == pytest.approx(hi)
    got = {e["feature"]: e["contribution"] for e in row["explanation"]}
    assert [e["method"] for e in row["explanation"]] == ["max_z_shapley"] * 2
    assert list(got) == ["velocity", "amount"]
    for f, phi in shapley.items():
        assert got[f] == pytest.approx(phi / hi * row["severity"], rel=1e-9)


def test_ensemble_explanation_weights_members_parts(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    rng = np.random.default_rng(4)
    train = rng.normal([50.0, 12.0, 2.0], [10.0, 3.0, 0.5], size=(1000, 3))
    members = [
        _member("robust_zscore", {}, train, Threshold("static", 3.0)),
        _member("zscore", {}, train, Threshold("static", 3.0)),
    ]
    rows = np.array([[95.0, 12.0, 3.4], [50.0, 30.0, 2.0]])
    ts = dt.datetime(2024, 1, 1)
    pdf = pd.DataFrame(rows, columns=FEATURES).assign(
        event_id=["a", "b"], entity_id="x", event_ts=ts, event_date=ts.date()
    )
    cfg = make_cfg("transactions")
    wide = score_wide(spark.createDataFrame(pdf), members, cfg)
    weights = [("robust_zscore", 0.25), ("zscore", 0.75)]
    out = wide.select(
        "event_id", "robust_zscore", "zscore", ensemble_explanation(weights, 3).alias("e")
    )
    for r in out.orderBy("event_id").collect():
        expected: dict[str, float] = {}
        for m, w in weights:
            for e in r[m]["explanation"]:
                expected[e["feature"]] = expected.get(e["feature"], 0.0) + w * e["contribution"]
        got = {e["feature"]: e["contribution"] for e in r["e"]}
        assert got == pytest.approx(expected, rel=1e-12)
        assert [abs(v) for v in got.values()] == sorted(
            (abs(v) for v in got.values()), reverse=True
        )
        assert {e["method"] for e in r["e"]} == {"max_z_shapley"}
