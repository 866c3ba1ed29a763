"""Raw detector scores -> comparable severity 0-100, and thresholds from config.

Severity is the empirical CDF of the training scores, in percent: a severity of
99 means "higher than 99% of what this detector saw in training", whatever the
scale of its raw score. That makes members of an ensemble comparable and lets
one alert threshold (``scoring.alert_severity``) apply to all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

# Quantile grid kept from training: 1,001 points bound the bundle size whatever
# the training set size, at a resolution of 0.1 severity points.
GRID = np.linspace(0.0, 1.0, 1001)


class Calibrator:
    """Empirical-CDF calibration of raw scores."""

    def fit(self, train_scores: np.ndarray) -> Calibrator:
        s = np.asarray(train_scores, dtype=np.float64)
        s = s[np.isfinite(s)]
        if s.size == 0:
            raise ValueError("cannot calibrate on zero finite training scores")
        self.quantiles_ = np.quantile(s, GRID)
        return self

    def severity(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        q = self.quantiles_
        if q[-1] == q[0]:
            # Degenerate training scores: at or below the constant is 0, above is 100.
            return np.where(raw > q[-1], 100.0, 0.0)
        # Ties in the grid (flat stretches) resolve to the upper end, so a score equal
        # to the training maximum is 100 and nothing above it can score lower.
        lo = np.interp(raw, q, GRID * 100.0, left=0.0, right=100.0)
        hi = np.interp(-raw, -q[::-1], GRID[::-1] * 100.0, left=100.0, right=0.0)
        sev = np.maximum(lo, hi)
        return np.where(np.isnan(raw), np.nan, np.clip(sev, 0.0, 100.0))


@dataclass(frozen=True)
class Threshold:
    """How a detector's cut on the raw score is chosen.

    - ``contamination``: the top ``value`` fraction of training scores is anomalous;
    - ``quantile``: the cut is the ``value`` quantile of training scores;
    - ``static``: the cut is ``value`` itself (e.g. 4.0 for a z-score).
    """

    policy: Literal["contamination", "quantile", "static"]
    value: float

    def __post_init__(self) -> None:
        if self.policy in ("contamination", "quantile") and not 0 < self.value < 1:
            raise ValueError(
                f"threshold.value for {self.policy} must be in (0, 1), got {self.value}"
            )
        if self.policy not in ("contamination", "quantile", "static"):
            raise ValueError(f"unknown threshold policy {self.policy!r}")

    def fit(self, train_scores: np.ndarray) -> float:
        s = np.asarray(train_scores, dtype=np.float64)
        if self.policy == "static":
            return float(self.value)
        q = 1.0 - self.value if self.policy == "contamination" else self.value
        return float(np.quantile(s[np.isfinite(s)], q, method="higher"))
