"""Sequential detectors for metric and sensor series: rows are observations in time order.

Convention shared by every detector here (``sequential = True``):

- ``fit(X)`` learns from a training stretch of the series (for NAB, the probation
  period): the initial state and the scale of the one-step-ahead residuals;
- ``score(X)`` runs the filter over ``X`` *from its first row*, starting from the
  state learned at the start of the training stretch, so ``X`` must begin at the
  same phase as the training data (score the whole series, or the same entity's
  next period aligned to the seasonal period);
- each column is its own series; a row's score is its largest |standardised
  residual| over the columns, and ``explain`` returns the columns with that z.

Residual scales are robust (median / MAD), so outliers in the training stretch
do not inflate the scale they are judged against.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from udfs.detectors.base import BaseDetector, check_fraction, check_positive, top_k_by_abs
from udfs.detectors.registry import register
from udfs.detectors.statistical import MAD_TO_SIGMA


def _robust_scale(resid: np.ndarray, floor: float) -> np.ndarray:
    med = np.median(resid, axis=0)
    mad = np.median(np.abs(resid - med), axis=0) * MAD_TO_SIGMA
    std = resid.std(axis=0)
    return np.maximum(np.where(mad > 0, mad, std), floor)


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class _ResidualDetector(BaseDetector):
    """Score = |one-step-ahead residual| / training residual scale, max over columns."""

    sequential = True
    min_std: float = 1e-9

    def _residuals(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _fit_state(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _fit(self, X: np.ndarray) -> None:
        self._fit_state(X)
        self.scale_ = _robust_scale(self._residuals(X), self.min_std)

    def z(self, X: np.ndarray) -> np.ndarray:
        return self._residuals(X) / self.scale_

    def _score(self, X: np.ndarray) -> np.ndarray:
        return np.abs(self.z(X)).max(axis=1)

    def explain(self, X: np.ndarray, top_k: int = 3) -> list[list[tuple[int, float]]]:
        return top_k_by_abs(self.z(self._check(X, fitting=False)), top_k)


@register("moving_average")
class MovingAverageResidual(_ResidualDetector):
    """Residual from the trailing mean of the previous ``window`` rows (expanding at the start)."""

    def __init__(self, window: int = 12) -> None:
        self.window = _check_int("window", window, 1)

    def _fit_state(self, X: np.ndarray) -> None:
        # The first row has no history: it is compared with the training mean.
        self.start_ = X.mean(axis=0)

    def _residuals(self, X: np.ndarray) -> np.ndarray:
        csum = np.vstack([np.zeros((1, X.shape[1])), np.cumsum(X, axis=0)])
        idx = np.arange(X.shape[0])
        lo = np.maximum(idx - self.window, 0)
        count = (idx - lo)[:, None]
        mean = (csum[idx] - csum[lo]) / np.maximum(count, 1)
        mean = np.where(count > 0, mean, self.start_)
        return X - mean


@register("ewma")
class EWMA(_ResidualDetector):
    """Residual from the exponentially weighted moving average of the past rows."""

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = check_fraction("alpha", alpha)

    def _fit_state(self, X: np.ndarray) -> None:
        self.start_ = X[0].copy()

    def _residuals(self, X: np.ndarray) -> np.ndarray:
        resid = np.empty_like(X)
        level = self.start_.copy()
        a = self.alpha
        for t in range(X.shape[0]):
            resid[t] = X[t] - level
            level = a * X[t] + (1 - a) * level
        return resid


@register("holt_winters")
class HoltWinters(_ResidualDetector):
    """Additive Holt-Winters (level, trend, season of ``period`` rows); residual = x - forecast.

    The initial level, trend and seasonal indexes come from the first two seasons
    of the training data (the classical decomposition start), so fitting needs at
    least ``2 * period`` rows.
    """

    def __init__(
        self, period: int = 24, alpha: float = 0.2, beta: float = 0.01, gamma: float = 0.1
    ) -> None:
        self.period = _check_int("period", period, 2)
        self.alpha = check_fraction("alpha", alpha)
        self.beta = check_fraction("beta", beta)
        self.gamma = check_fraction("gamma", gamma)

    def min_rows(self) -> int:
        return 2 * self.period

    def _fit_state(self, X: np.ndarray) -> None:
        m = self.period
        first, second = X[:m].mean(axis=0), X[m : 2 * m].mean(axis=0)
        self.level0_ = first
        self.trend0_ = (second - first) / m
        self.season0_ = X[:m] - first  # (m, d)

    def _residuals(self, X: np.ndarray) -> np.ndarray:
        m, a, b, g = self.period, self.alpha, self.beta, self.gamma
        level, trend = self.level0_.copy(), self.trend0_.copy()
        season = self.season0_.copy()
        resid = np.empty_like(X)
        for t in range(X.shape[0]):
            s = season[t % m]
            resid[t] = X[t] - (level + trend + s)
            new_level = a * (X[t] - s) + (1 - a) * (level + trend)
            trend = b * (new_level - level) + (1 - b) * trend
            season[t % m] = g * (X[t] - new_level) + (1 - g) * s
            level = new_level
        return resid


class QuantileIntervalDetector(BaseDetector):
    """A forecaster of per-row (lower, median, upper) quantiles, scored by where each
    observation falls: distance beyond the median in units of the half-interval on
    that side, so > 1 means outside the predicted interval; max |z| over columns."""

    sequential = True

    def forecast(self, X: np.ndarray) -> np.ndarray:
        """Per row and column: the (lower, median, upper) predicted quantiles, shape (n, d, 3)."""
        raise NotImplementedError

    def z(self, X: np.ndarray) -> np.ndarray:
        q = self.forecast(X)
        lo, med, hi = q[..., 0], q[..., 1], q[..., 2]
        up = (X - med) / np.maximum(hi - med, 1e-9)
        down = (X - med) / np.maximum(med - lo, 1e-9)
        return np.where(med <= X, up, down)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return np.abs(self.z(X)).max(axis=1)

    def explain(self, X: np.ndarray, top_k: int = 3) -> list[list[tuple[int, float]]]:
        return top_k_by_abs(self.z(self._check(X, fitting=False)), top_k)


@register("forecast_quantile")
class QuantileForecaster(QuantileIntervalDetector):
    """A small probabilistic forecaster: AR(``lags``) on the series, residual quantiles.

    The point forecast is a least-squares autoregression on the previous ``lags``
    rows; the predictive distribution is the forecast plus the empirical training
    residuals, so the interval is ``[f + q_lo, f + q_hi]`` with
    ``q = quantiles of the residuals at (1 - coverage) / 2 and (1 + coverage) / 2``.
    Score > 1 means the observation fell outside the predicted quantile interval
    (distance beyond the median in units of the half-interval on that side).
    """

    def __init__(self, lags: int = 8, coverage: float = 0.98, ridge: float = 1e-3) -> None:
        self.lags = _check_int("lags", lags, 1)
        self.coverage = check_fraction("coverage", coverage)
        self.ridge = check_positive("ridge", ridge, allow_zero=True)

    def min_rows(self) -> int:
        return 2 * self.lags + 2

    def _design(self, x: np.ndarray, col: int) -> np.ndarray:
        # Pad the start with the training mean so the first rows get a forecast too.
        p = self.lags
        padded = np.concatenate([np.full(p, self.mean_[col]), x])
        lagged = np.lib.stride_tricks.sliding_window_view(padded, p)[: len(x)]
        return np.hstack([lagged, np.ones((len(x), 1))])

    def _fit(self, X: np.ndarray) -> None:
        self.mean_ = X.mean(axis=0)
        self.coef_ = np.empty((X.shape[1], self.lags + 1))
        lo_q, hi_q = (1 - self.coverage) / 2, (1 + self.coverage) / 2
        self.q_ = np.empty((X.shape[1], 3))
        for j in range(X.shape[1]):
            A, y = self._design(X[:, j], j)[self.lags :], X[self.lags :, j]
            reg = self.ridge * np.eye(A.shape[1])
            self.coef_[j] = np.linalg.solve(A.T @ A + reg, A.T @ y)
            resid = y - A @ self.coef_[j]
            self.q_[j] = np.quantile(resid, [lo_q, 0.5, hi_q])

    def forecast(self, X: np.ndarray) -> np.ndarray:
        """Per row and column: the (lower, median, upper) predicted quantiles, shape (n, d, 3)."""
        X = self._check(X, fitting=False)
        out = np.empty((*X.shape, 3))
        for j in range(X.shape[1]):
            f = self._design(X[:, j], j) @ self.coef_[j]
            out[:, j, :] = f[:, None] + self.q_[j][None, :]
        return out


@register("gesd")
class GeneralizedESD(BaseDetector):
    """Rosner's generalized ESD test (Grubbs' test repeated) on each column of a short series.

    ``fit`` only records the column count: the test is about the batch being scored,
    one series at a time (use it per series, not on arbitrary Arrow batches). A row
    removed at step ``i`` scores ``R_i / lambda_i`` (> 1: the test rejects it at level
    ``alpha``); rows never removed score their final Grubbs statistic over the next
    critical value, which is below the removed ones. Score = max over columns.
    """

    sequential = True

    def __init__(self, max_outliers: float = 0.1, alpha: float = 0.05) -> None:
        self.max_outliers = check_fraction("max_outliers", max_outliers)
        self.alpha = check_fraction("alpha", alpha)

    def _fit(self, X: np.ndarray) -> None:
        pass

    def _column(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        score = np.zeros(n)
        if n < 3:
            return score
        k = max(1, int(np.floor(self.max_outliers * n)))
        k = min(k, n - 2)
        alive = np.ones(n, dtype=bool)
        removed: list[tuple[int, float]] = []
        for i in range(1, k + 1):
            vals = x[alive]
            sd = vals.std(ddof=1)
            if sd <= 0:
                break
            dev = np.abs(x - vals.mean()) / sd
            dev[~alive] = -np.inf
            j = int(np.argmax(dev))
            ratio = float(dev[j]) / _esd_critical(n, i, self.alpha)
            removed.append((j, ratio))
            alive[j] = False
        vals = x[alive]
        sd = vals.std(ddof=1) if alive.sum() > 1 else 0.0
        if sd > 0 and alive.sum() > 2:
            crit = _esd_critical(n, len(removed) + 1, self.alpha)
            score[alive] = np.abs(x[alive] - vals.mean()) / sd / crit
        # A point removed earlier is at least as extreme as anything left: keep ranks.
        floor = score[alive].max() if alive.any() else 0.0
        for j, ratio in reversed(removed):
            score[j] = max(ratio, floor)
            floor = score[j]
        return score

    def _score(self, X: np.ndarray) -> np.ndarray:
        return np.max(np.column_stack([self._column(X[:, j]) for j in range(X.shape[1])]), axis=1)


def _esd_critical(n: int, i: int, alpha: float) -> float:
    """Rosner's lambda_i for n observations at step i (1-based)."""
    dof = n - i - 1
    if dof < 1:
        return np.inf
    p = 1 - alpha / (2 * (n - i + 1))
    t = float(stats.t.ppf(p, dof))
    return (n - i) * t / np.sqrt((dof + t**2) * (n - i + 1))


@register("sliding_zscore")
class SlidingZScore(BaseDetector):
    """|z| of each row against the mean and spread of the previous ``window`` rows.

    Level and spread are re-estimated at every row from a sliding window (NAB's
    windowed Gaussian, per column), so a level shift scores high once and becomes
    normal after a window, unlike a z-score frozen at fit time. Rows before a full
    window use what they have (at least the training stretch's statistics).
    """

    sequential = True
    min_std: float = 1e-9

    def __init__(self, window: int = 1000) -> None:
        self.window = _check_int("window", window, 2)

    def _fit(self, X: np.ndarray) -> None:
        self.mean0_ = X.mean(axis=0)
        self.std0_ = np.maximum(X.std(axis=0), self.min_std)

    def z(self, X: np.ndarray) -> np.ndarray:
        past = pd.DataFrame(X).shift(1).rolling(self.window, min_periods=2)
        mean = past.mean().to_numpy()
        std = past.std().to_numpy()
        mean = np.where(np.isnan(mean), self.mean0_, mean)
        std = np.maximum(np.where(np.isnan(std), self.std0_, std), self.min_std)
        return (X - mean) / std

    def _score(self, X: np.ndarray) -> np.ndarray:
        return np.abs(self.z(X)).max(axis=1)

    def explain(self, X: np.ndarray, top_k: int = 3) -> list[list[tuple[int, float]]]:
        return top_k_by_abs(self.z(self._check(X, fitting=False)), top_k)


@register("seasonal_zscore")
class SeasonalZScore(BaseDetector):
    """|z| of each row against the same slot of the previous ``history`` seasons.

    A slot is the row's position in a season of ``period`` rows (a day's profile:
    ``period`` = rows per day). Level and spread are the median and MAD of the same
    slot over the last ``history`` seasons, blended with the last ``period`` rows'
    spread so a quiet slot does not make every wiggle infinite. Updated as rows
    arrive: a changed daily pattern is normal again after ``history`` seasons.
    Rows before the first full season are judged against the training statistics.
    """

    sequential = True
    min_std: float = 1e-9

    def __init__(self, period: int = 24, history: int = 7) -> None:
        self.period = _check_int("period", period, 2)
        self.history = _check_int("history", history, 1)

    def _fit(self, X: np.ndarray) -> None:
        self.center0_ = np.median(X, axis=0)
        self.scale0_ = _robust_scale(X - self.center0_, self.min_std)

    def z(self, X: np.ndarray) -> np.ndarray:
        n, d = X.shape
        m = self.period
        out = np.empty_like(X)
        slot = np.arange(n) % m
        for j in range(d):
            frame = pd.DataFrame({"slot": slot, "x": X[:, j]})
            past = frame.groupby("slot")["x"].shift(1)
            by_slot = past.groupby(frame["slot"]).rolling(self.history, min_periods=1)
            center = by_slot.median().reset_index(level=0, drop=True).sort_index().to_numpy()
            dev = np.abs(X[:, j] - np.where(np.isnan(center), self.center0_[j], center))
            # Spread: robust scale of the recent deviations from the slot profile.
            recent = pd.Series(dev).shift(1).rolling(m, min_periods=1).median().to_numpy()
            scale = np.where(np.isnan(recent), self.scale0_[j], recent * MAD_TO_SIGMA)
            center = np.where(np.isnan(center), self.center0_[j], center)
            out[:, j] = (X[:, j] - center) / np.maximum(scale, self.min_std)
        return out

    def _score(self, X: np.ndarray) -> np.ndarray:
        return np.abs(self.z(X)).max(axis=1)

    def explain(self, X: np.ndarray, top_k: int = 3) -> list[list[tuple[int, float]]]:
        return top_k_by_abs(self.z(self._check(X, fitting=False)), top_k)
