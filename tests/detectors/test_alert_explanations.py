"""Alerts carry a readable explanation struct: z-type features with their z, IF tree paths."""

from __future__ import annotations

import datetime as dt
import hashlib
import pickle
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession

from jobs.score import Member, score_wide, to_alerts
from lakehound.config import Config
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
    assert top["contribution"] > 0
    # From the robust z (training median / MAD) or the IF path weight; the z is checked below.
    zrow = [
        r
        for r in wide.where("event_id = 'e7'").select("robust_zscore.explanation").first()[0]  # type: ignore[index]
    ]
    med = np.median(train[:, 2])
    mad = np.median(np.abs(train[:, 2] - med)) * 1.482602218505602
    assert zrow[0]["feature"] == "velocity"
    assert abs(zrow[0]["contribution"] - (9.0 - med) / mad) < 1e-9
