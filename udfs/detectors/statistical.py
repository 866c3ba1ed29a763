"""Per-feature statistical detectors: z-score and robust (median / MAD) z-score.

The raw score of a row is its largest absolute per-feature z, so a static
threshold reads as "some feature is more than k standard deviations out", and
the explanation is the features with their z, strongest first.
"""

from __future__ import annotations

import numpy as np

from udfs.detectors.base import BaseDetector, check_positive, top_k_by_abs
from udfs.detectors.registry import register

# MAD * 1.4826 estimates sigma for normal data (1 / Phi^-1(3/4)).
MAD_TO_SIGMA = 1.482602218505602


@register("zscore")
class ZScore(BaseDetector):
    """Largest |x - mean| / std over the features."""

    def __init__(self, min_std: float = 1e-9) -> None:
        # Constant training features would divide by zero; a floor keeps them finite.
        self.min_std = check_positive("min_std", min_std)

    def _fit(self, X: np.ndarray) -> None:
        self.center_ = X.mean(axis=0)
        self.scale_ = np.maximum(X.std(axis=0), self.min_std)

    def z(self, X: np.ndarray) -> np.ndarray:
        return (X - self.center_) / self.scale_

    def _score(self, X: np.ndarray) -> np.ndarray:
        return np.abs(self.z(X)).max(axis=1)

    def explain(self, X: np.ndarray, top_k: int = 3) -> list[list[tuple[int, float]]]:
        return top_k_by_abs(self.z(self._check(X, fitting=False)), top_k)


@register("robust_zscore")
class RobustZScore(ZScore):
    """Like :class:`ZScore` with median and MAD: the outliers cannot mask themselves."""

    def _fit(self, X: np.ndarray) -> None:
        self.center_ = np.median(X, axis=0)
        mad = np.median(np.abs(X - self.center_), axis=0) * MAD_TO_SIGMA
        # A feature that is constant for more than half the rows has MAD 0; fall back
        # to the standard deviation so a rare non-zero value is not scored infinite.
        std = X.std(axis=0)
        self.scale_ = np.maximum(np.where(mad > 0, mad, std), self.min_std)
