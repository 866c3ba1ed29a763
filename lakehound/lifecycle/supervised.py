"""The semi-supervised member: a scikit-learn classifier on analyst-confirmed labels.

It is packed in the same :class:`ModelBundle` as the unsupervised detectors (same
NaN policy, calibration to severity, threshold), so scoring and the ensemble treat
it like any other member. Raw score = predicted probability of "anomaly".
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from udfs.bundle import ModelBundle
from udfs.calibration import Calibrator, Threshold

NAME = "supervised"


class SupervisedDetector:
    """Gradient-boosted trees on labelled rows; ``score`` is P(anomaly)."""

    name = NAME

    def __init__(
        self, max_iter: int = 200, learning_rate: float = 0.1, max_leaf_nodes: int = 31,
        random_state: int = 0,
    ) -> None:  # fmt: skip
        if int(max_iter) < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter!r}")
        self.max_iter = int(max_iter)
        self.learning_rate = float(learning_rate)
        self.max_leaf_nodes = int(max_leaf_nodes)
        self.random_state = int(random_state)

    def fit_labelled(self, X: np.ndarray, y: np.ndarray) -> SupervisedDetector:
        y = np.asarray(y, dtype=np.int8)
        if len(np.unique(y)) < 2:
            raise ValueError("supervised member needs both anomalies and normal rows")
        self.model_ = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            # Fraud is rare: weight the classes so the anomalies are not ignored.
            class_weight="balanced",
            random_state=self.random_state,
        ).fit(X, y)
        return self

    def fit(self, X: np.ndarray) -> SupervisedDetector:
        raise TypeError("SupervisedDetector needs labels: use fit_labelled(X, y)")

    def score(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model_.predict_proba(X)[:, 1], dtype=np.float64)


def fit_bundle(
    features: list[str],
    X: np.ndarray,
    y: np.ndarray,
    params: dict[str, Any],
    threshold: Threshold,
) -> ModelBundle:
    """A scoring bundle for the supervised member, trained on labelled rows only."""
    X = np.asarray(X, dtype=np.float64)
    fill = np.nanmedian(np.where(np.isfinite(X), X, np.nan), axis=0)
    fill = np.where(np.isfinite(fill), fill, 0.0)
    Xf = np.where(np.isfinite(X), X, fill)
    det = SupervisedDetector(**params).fit_labelled(Xf, y)
    raw = det.score(Xf)
    cut = float(threshold.fit(raw))
    return ModelBundle(
        detector_name=NAME,
        features=list(features),
        params=dict(params),
        detector=det,
        calibrator=Calibrator().fit(raw),
        threshold=cut,
        fill_values=fill,
        metrics={
            "train_rows": float(len(y)),
            "train_positives": float(np.sum(y)),
            "train_anomaly_rate": float(np.mean(raw >= cut)),
        },
    )
