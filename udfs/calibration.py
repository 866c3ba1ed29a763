"""Raw detector scores -> comparable severity in [0, 100), and thresholds from config.

Up to the 99th percentile of the training scores, severity is their empirical CDF
in percent: a severity of 90 means "higher than 90% of what this detector saw in
training", whatever the scale of its raw score. That makes members of an ensemble
comparable and lets one alert threshold (``scoring.alert_severity``) apply to all.

Past the 99th percentile a CDF saturates (everything beyond the training maximum
would read 100 and could not be ranked), so the last point is spent on a fitted
tail: a generalised Pareto distribution (GPD) fitted to the training scores above
their 95th percentile gives ``z``, the number of e-folds by which a score's tail
probability falls below 1% (``z = H(x) - H(q99)``, ``H`` the GPD's cumulative
hazard), and ``severity = 100 - 1 / (1 + z)``. It is continuous at 99, strictly
increasing in the raw score, and below 100 for every finite score: 99.5 means a
tail probability of 1% / e, 99.9 one of 1% / e^9.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

# Quantile grid kept from training: 1,001 points bound the bundle size whatever
# the training set size, at a resolution of 0.1 severity points.
GRID = np.linspace(0.0, 1.0, 1001)
# Grid index of the last quantile read as an empirical CDF (the 99th percentile).
TAIL_START = 990
# Grid index from which the tail distribution is fitted (the 95th percentile): 51
# evenly spaced quantiles are enough for two moments, and stabler than the top 1%.
FIT_START = 950
# Shape of the fitted tail, bounded: >= 0 so the tail has no finite end point (a
# score past it could not be ranked), < 0.5 so the moment estimator exists.
MAX_SHAPE = 0.45


@dataclass(frozen=True)
class Tail:
    """A GPD over ``threshold``: survival ``(1 + shape * y / scale) ** (-1 / shape)``."""

    threshold: float
    scale: float
    shape: float

    def hazard(self, x: np.ndarray) -> np.ndarray:
        """Cumulative hazard ``-log S(x)`` (0 at the threshold, increasing)."""
        y = np.maximum(np.asarray(x, dtype=np.float64) - self.threshold, 0.0) / self.scale
        if self.shape == 0.0:
            return y
        return np.log1p(self.shape * y) / self.shape


def fit_tail(threshold: float, excess: np.ndarray, span: float) -> Tail:
    """Method-of-moments GPD fit to the excesses over ``threshold`` (Hosking and
    Wallis 1987): shape ``(1 - m^2 / v) / 2``, scale ``m (m^2 / v + 1) / 2``."""
    m, v = (float(excess.mean()), float(excess.var())) if excess.size else (0.0, 0.0)
    if m <= 0.0:
        # A flat training tail (e.g. a saturated score): any scale orders the scores
        # beyond it; 1% of the score range (or of its magnitude) keeps it readable.
        return Tail(threshold, 0.01 * span if span > 0 else 1.0, 0.0)
    shape = 0.5 * (1.0 - m * m / v) if v > 0 else 0.0
    if shape <= 0.0:
        # Lighter than exponential: the exponential tail (scale = mean excess) is
        # the bounded-shape fit.
        return Tail(threshold, m, 0.0)
    shape = min(shape, MAX_SHAPE)
    return Tail(threshold, 0.5 * m * (m * m / v + 1.0), shape)


def _span(q: np.ndarray) -> float:
    return float(q[-1] - q[0]) or abs(float(q[-1]))


class Calibrator:
    """Empirical-CDF calibration of raw scores with a fitted upper tail."""

    def fit(self, train_scores: np.ndarray) -> Calibrator:
        s = np.asarray(train_scores, dtype=np.float64)
        s = s[np.isfinite(s)]
        if s.size == 0:
            raise ValueError("cannot calibrate on zero finite training scores")
        self.quantiles_ = np.quantile(s, GRID)
        u = float(self.quantiles_[FIT_START])
        self.tail_ = fit_tail(u, s[s > u] - u, _span(self.quantiles_))
        return self

    def tail(self) -> Tail:
        tail = getattr(self, "tail_", None)
        if tail is None:
            # A calibrator pickled before the tail existed: fitted on the midpoints
            # of its stored top quantiles (each stands for 0.1% of the training rows).
            q = self.quantiles_
            u = float(q[FIT_START])
            mid = 0.5 * (q[FIT_START:-1] + q[FIT_START + 1 :]) - u
            tail = fit_tail(u, mid, _span(q))
        return tail

    def severity(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        q = self.quantiles_
        top = q[TAIL_START]
        if q[-1] == q[0]:
            # Degenerate training scores: at or below the constant is 0, above is
            # in the tail.
            body = np.zeros_like(raw)
        else:
            body_q = q[: TAIL_START + 1]
            body_p = GRID[: TAIL_START + 1] * 100.0
            # Ties in the grid (flat stretches) resolve to the upper end, so nothing
            # above a tied score can read lower than it.
            lo = np.interp(raw, body_q, body_p, left=0.0, right=body_p[-1])
            hi = np.interp(-raw, -body_q[::-1], body_p[::-1], left=body_p[-1], right=0.0)
            body = np.maximum(lo, hi)
        tail = self.tail()
        z = tail.hazard(raw) - tail.hazard(np.asarray(top))
        above = raw > top
        pct = GRID[TAIL_START] * 100.0
        with np.errstate(invalid="ignore", over="ignore"):
            beyond = 100.0 - (100.0 - pct) / (1.0 + np.where(above, z, 0.0))
        sev = np.where(above, beyond, np.clip(body, 0.0, pct))
        return np.where(np.isnan(raw), np.nan, sev)


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
