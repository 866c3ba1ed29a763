"""A fitted detector with everything needed to score a batch: pure numpy, no Spark.

The bundle is the unit that is trained, checksummed, registered and shipped to
Python workers: the detector, its feature order, the NaN policy's fill values, the
calibrator that maps raw scores to severity 0-100 and the fitted threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from udfs.calibration import Calibrator, Threshold
from udfs.detectors.base import Detector
from udfs.detectors.registry import create


@dataclass
class ScoredBatch:
    raw: np.ndarray
    severity: np.ndarray
    is_anomaly: np.ndarray
    # Per row: (feature name, feature value, contribution), strongest first.
    explanation: list[list[tuple[str, float, float]]]


@dataclass
class ScoredArrays:
    """A scored batch as arrays; explanation slot ``s`` of row ``i`` is
    ``(features[feature[i, s]], contribution[i, s])``, strongest first, and absent
    where ``feature[i, s] == -1`` (unflagged rows have none). The feature's value is
    the caller's input ``X[i, feature[i, s]]``."""

    raw: np.ndarray
    severity: np.ndarray
    is_anomaly: np.ndarray
    feature: np.ndarray
    contribution: np.ndarray


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
        )

    def score(self, X: np.ndarray, top_k: int = 3) -> ScoredBatch:
        X = _impute(np.asarray(X, dtype=np.float64), self.fill_values)
        arrays = self._score_imputed(X, top_k)
        explanation: list[list[tuple[str, float, float]]] = [[] for _ in range(X.shape[0])]
        # Only flagged rows have an explanation: a Python list per flagged row, nothing
        # per unflagged row.
        for row in np.flatnonzero(arrays.feature[:, 0] >= 0) if arrays.feature.shape[1] else []:
            explanation[row] = [
                (self.features[j], float(X[row, j]), float(c))
                for j, c in zip(arrays.feature[row], arrays.contribution[row], strict=True)
                if j >= 0
            ]
        return ScoredBatch(
            raw=arrays.raw,
            severity=arrays.severity,
            is_anomaly=arrays.is_anomaly,
            explanation=explanation,
        )

    def score_arrays(self, X: np.ndarray, top_k: int = 3) -> ScoredArrays:
        """:meth:`score` as flat numpy arrays, no Python object per row: what the
        pandas UDF ships to Arrow."""
        return self._score_imputed(
            _impute(np.asarray(X, dtype=np.float64), self.fill_values), top_k
        )

    def _score_imputed(self, X: np.ndarray, top_k: int) -> ScoredArrays:
        n = X.shape[0]
        combined = getattr(self.detector, "score_and_explain", None)
        if combined is not None:
            # Isolation Forest: one walk of the trees gives scores and the leaves the
            # attributions of the flagged rows need.
            raw, feature, contribution = combined(X, self.threshold, top_k)
            raw = np.asarray(raw, dtype=np.float64)
        else:
            raw = np.asarray(self.detector.score(X), dtype=np.float64)
            feature = np.empty((n, 0), dtype=np.int64)
            contribution = np.empty((n, 0))
        if raw.shape != (n,):
            raise ValueError(f"{self.detector_name} returned {raw.shape} scores for {n} rows")
        is_anom = raw >= self.threshold
        if combined is None:
            # Explanations are only computed for flagged rows: they are for analysts,
            # and path attributions cost far more than scoring.
            flagged = np.flatnonzero(is_anom)
            if flagged.size and hasattr(self.detector, "explain"):
                expl = self.detector.explain(X[flagged], top_k=top_k)
                width = max((len(items) for items in expl), default=0)
                feature = np.full((n, width), -1, dtype=np.int64)
                contribution = np.full((n, width), np.nan)
                for row, items in zip(flagged, expl, strict=True):
                    for slot, (j, c) in enumerate(items):
                        feature[row, slot] = j
                        contribution[row, slot] = c
        return ScoredArrays(
            raw=raw,
            severity=np.asarray(self.calibrator.severity(raw), dtype=np.float64),
            is_anomaly=is_anom,
            feature=feature,
            contribution=contribution,
        )


def _impute(X: np.ndarray, fill: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(X)
    if not bad.any():
        return X
    X = X.copy()
    X[bad] = np.take(fill, np.nonzero(bad)[1])
    return X
