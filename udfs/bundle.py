"""A fitted detector with everything needed to score a batch: pure numpy, no Spark.

The bundle is the unit that is trained, checksummed, registered and shipped to
Python workers: the detector, its feature order, the NaN policy's fill values, the
calibrator that maps raw scores to severity 0-100, the fitted threshold and, for
detectors explained by KernelSHAP, a small background of training rows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from udfs import explain
from udfs.calibration import Calibrator, Threshold
from udfs.detectors.base import Detector
from udfs.detectors.registry import create

# Attribution methods by code: the pandas UDF ships the code, the JVM the name.
METHODS = [explain.TREE_SHAP, explain.KERNEL_SHAP, explain.MAX_Z_SHAPLEY, explain.PCA_SHAPLEY]


class ScoredBatch:
    """Scores of a batch; ``explanation`` (per row: (feature name, feature value,
    contribution in severity points), strongest first, flagged rows only) and
    ``method`` (its attribution method, "" when no row was explained) are computed
    on first access: callers that only read scores (tuning, promotion checks) do
    not pay for attributions."""

    def __init__(
        self,
        raw: np.ndarray,
        severity: np.ndarray,
        is_anomaly: np.ndarray,
        explain: Callable[[], tuple[list[list[tuple[str, float, float]]], str]],
    ) -> None:
        self.raw, self.severity, self.is_anomaly = raw, severity, is_anomaly
        self._explain = explain

    @functools.cached_property
    def _explained(self) -> tuple[list[list[tuple[str, float, float]]], str]:
        return self._explain()

    @property
    def explanation(self) -> list[list[tuple[str, float, float]]]:
        return self._explained[0]

    @property
    def method(self) -> str:
        return self._explained[1]


@dataclass
class ScoredArrays:
    """A scored batch as arrays; explanation slot ``s`` of row ``i`` is
    ``(features[feature[i, s]], contribution[i, s])``, strongest first, and absent
    where ``feature[i, s] == -1`` (unflagged rows have none). The feature's value is
    the caller's input ``X[i, feature[i, s]]``; ``method`` is the attribution
    method's index in :data:`METHODS` (-1 for none)."""

    raw: np.ndarray
    severity: np.ndarray
    is_anomaly: np.ndarray
    feature: np.ndarray
    contribution: np.ndarray
    method: int = -1


@dataclass
class Explained:
    """Attributions of every feature of some rows, in severity points: each row's
    ``parts`` sum to ``severity - base_severity``."""

    method: str
    parts: np.ndarray
    severity: np.ndarray
    base_severity: np.ndarray
    attribution: explain.Attribution


@dataclass
class ModelBundle:
    detector_name: str
    features: list[str]
    params: dict[str, Any]
    detector: Detector
    calibrator: Calibrator
    threshold: float
    # NaN policy: a missing feature is replaced by its training median, so a row is
    # never dropped and never gets a NaN score (Spark side counts the imputations).
    fill_values: np.ndarray
    version: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    # KernelSHAP background: k-means centres of the training rows and their weights
    # (None for detectors explained another way, and in bundles made before it).
    background: np.ndarray | None = None
    background_weights: np.ndarray | None = None

    @classmethod
    def fit(
        cls,
        detector_name: str,
        params: dict[str, Any],
        features: list[str],
        X: np.ndarray,
        threshold: Threshold,
    ) -> ModelBundle:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(features):
            raise ValueError(f"X has shape {X.shape}, expected (n, {len(features)})")
        if X.shape[0] < 2:
            raise ValueError("need at least 2 training rows")
        fill = np.nanmedian(np.where(np.isfinite(X), X, np.nan), axis=0)
        fill = np.where(np.isfinite(fill), fill, 0.0)
        X = _impute(X, fill)
        detector = create(detector_name, **params).fit(X)
        train_scores = detector.score(X)
        calibrator = Calibrator().fit(train_scores)
        cut = float(threshold.fit(train_scores))
        bg: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
        if explain.method_of(detector) == explain.KERNEL_SHAP and not detector.sequential:
            bg = explain.background(X)
        return cls(
            detector_name=detector_name,
            features=list(features),
            params=dict(params),
            detector=detector,
            calibrator=calibrator,
            threshold=cut,
            fill_values=fill,
            metrics={
                "train_rows": float(X.shape[0]),
                "train_anomaly_rate": float(np.mean(train_scores >= cut)),
            },
            background=bg[0],
            background_weights=bg[1],
        )

    def score(self, X: np.ndarray, top_k: int = 3) -> ScoredBatch:
        X = _impute(np.asarray(X, dtype=np.float64), self.fill_values)
        arrays = self._score_imputed(X, 0)

        def explain_flagged() -> tuple[list[list[tuple[str, float, float]]], str]:
            explanation: list[list[tuple[str, float, float]]] = [[] for _ in range(X.shape[0])]
            flagged = np.flatnonzero(arrays.is_anomaly)
            k = min(max(int(top_k), 0), X.shape[1])
            if not flagged.size or not k:
                return explanation, ""
            ex = self._explain(X, flagged, arrays.raw[flagged])
            if ex is None:
                return explanation, ""
            idx, vals = explain.top_k(ex.parts, k)
            # A Python list per flagged row, nothing per unflagged row.
            for row, js, cs in zip(flagged, idx, vals, strict=True):
                explanation[row] = [
                    (self.features[j], float(X[row, j]), float(c))
                    for j, c in zip(js, cs, strict=True)
                ]
            return explanation, ex.method

        return ScoredBatch(arrays.raw, arrays.severity, arrays.is_anomaly, explain_flagged)

    def score_arrays(self, X: np.ndarray, top_k: int = 3) -> ScoredArrays:
        """:meth:`score` as flat numpy arrays, no Python object per row: what the
        pandas UDF ships to Arrow."""
        return self._score_imputed(
            _impute(np.asarray(X, dtype=np.float64), self.fill_values), top_k
        )

    def explain(self, X: np.ndarray, rows: np.ndarray | None = None) -> Explained:
        """Attributions of every feature of ``X[rows]`` (all rows by default),
        flagged or not, in severity points."""
        X = _impute(np.asarray(X, dtype=np.float64), self.fill_values)
        rows = np.arange(X.shape[0]) if rows is None else np.asarray(rows, dtype=np.intp)
        raw = np.asarray(self.detector.score(X), dtype=np.float64)
        ex = self._explain(X, rows, raw[rows])
        if ex is None:
            raise ValueError(
                f"{self.detector_name} scores rows in sequence and has no per-feature z: "
                "no attribution of a single row"
            )
        return ex

    def _explain(self, X: np.ndarray, rows: np.ndarray, raw: np.ndarray) -> Explained | None:
        bg = None
        if self.background is not None:
            weights = self.background_weights
            bg = (self.background, np.ones(len(self.background)) if weights is None else weights)
        elif explain.method_of(self.detector) == explain.KERNEL_SHAP:
            # A bundle without a background (made before it, or built by hand): the
            # training medians, one row, are the reference.
            bg = (self.fill_values[None, :], np.ones(1))
        att = explain.attribute(self.detector, X, rows, raw, bg)
        if att is None:
            return None
        severity = np.asarray(self.calibrator.severity(raw), dtype=np.float64)
        base = np.asarray(self.calibrator.severity(att.base_raw), dtype=np.float64)
        parts = explain.to_severity(att, severity, base)
        return Explained(att.method, parts, severity, base, att)

    def _score_imputed(self, X: np.ndarray, top_k: int) -> ScoredArrays:
        n = X.shape[0]
        raw = np.asarray(self.detector.score(X), dtype=np.float64)
        if raw.shape != (n,):
            raise ValueError(f"{self.detector_name} returned {raw.shape} scores for {n} rows")
        is_anom = raw >= self.threshold
        k = min(max(int(top_k), 0), X.shape[1])
        feature = np.full((n, k), -1, dtype=np.int64)
        contribution = np.full((n, k), np.nan)
        method = -1
        # Explanations are only computed for flagged rows: they are for analysts,
        # and attributions cost far more than scoring.
        flagged = np.flatnonzero(is_anom)
        ex = self._explain(X, flagged, raw[flagged]) if flagged.size and k else None
        if ex is not None:
            idx, vals = explain.top_k(ex.parts, k)
            feature[flagged] = idx
            contribution[flagged] = vals
            method = METHODS.index(ex.method)
        return ScoredArrays(
            raw=raw,
            severity=np.asarray(self.calibrator.severity(raw), dtype=np.float64),
            is_anomaly=is_anom,
            feature=feature,
            contribution=contribution,
            method=method,
        )


def _impute(X: np.ndarray, fill: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(X)
    if not bad.any():
        return X
    X = X.copy()
    X[bad] = np.take(fill, np.nonzero(bad)[1])
    return X
