"""Tuning on a time-ordered split, and the supervised member."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from lakehound.lifecycle import supervised, tuning
from udfs.calibration import Threshold


def _data(seed: int = 0, n: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (rng.random(n) < 0.03).astype(int)
    # Anomalies are large in feature 0 only.
    X[y == 1, 0] += 5.0
    ts = np.arange(n, dtype=float)
    return X, y, ts


def test_time_split_is_ordered_not_random() -> None:
    ts = np.array([5.0, 1.0, 4.0, 2.0, 3.0])
    fit, valid = tuning.time_split(ts, 0.4)
    assert sorted(ts[fit]) == [1.0, 2.0, 3.0] and sorted(ts[valid]) == [4.0, 5.0]
    with pytest.raises(ValueError):
        tuning.time_split(ts, 1.0)


def test_grid_points() -> None:
    assert tuning.grid_points({}) == [{}]
    assert tuning.grid_points({"b": [1, 2], "a": ["x"]}) == [{"a": "x", "b": 1}, {"a": "x", "b": 2}]


def test_tune_picks_best_validation_pr_auc_and_a_useful_threshold() -> None:
    X, y, ts = _data()
    grid = {"n_estimators": [20, 60], "max_samples": [64, 256]}
    out = tuning.tune("isolation_forest", {"random_state": 0}, grid, ["a", "b", "c"], X, y, ts, 0.3)
    assert len(out.trials) == 4
    assert out.valid_pr_auc == max(t.pr_auc for t in out.trials)
    assert out.params == next(t.params for t in out.trials if t.pr_auc == out.valid_pr_auc)
    # Anomalies are separable on feature 0: the tuned forest ranks them well on the later rows.
    assert out.valid_pr_auc > 0.5
    assert tuning.MIN_CONTAMINATION <= out.contamination <= tuning.MAX_CONTAMINATION
    # The contamination found is close to the true anomaly rate (3%), not the 1% default.
    assert 0.005 < out.contamination < 0.08
    assert out.valid_f1 > 0.5


def test_tune_refuses_without_validation_positives() -> None:
    X, _, ts = _data()
    with pytest.raises(ValueError, match="no labelled anomaly"):
        tuning.tune("zscore", {}, {}, ["a", "b", "c"], X, np.zeros(len(X)), ts)


def test_supervised_bundle_scores_like_the_classifier() -> None:
    X, y, _ = _data(1)
    X[5, 1] = np.nan  # the bundle's NaN policy must hold for the supervised member too
    bundle = supervised.fit_bundle(
        ["a", "b", "c"], X[:2000], y[:2000], {"max_iter": 50}, Threshold("contamination", 0.03)
    )
    out = bundle.score(X[2000:])
    assert out.raw.shape == (1000,) and np.all((out.raw >= 0) & (out.raw <= 1))
    assert average_precision_score(y[2000:], out.raw) > 0.8
    assert np.all((out.severity >= 0) & (out.severity <= 100))
    with pytest.raises(ValueError, match="both anomalies"):
        supervised.fit_bundle(["a"], X[:10, :1], np.zeros(10), {}, Threshold("contamination", 0.1))
