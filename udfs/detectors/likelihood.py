"""Anomaly likelihood and suppression: a post-stage over any detector's raw score stream.

A raw score (|z|, a forecast residual, a reconstruction error) means different things
on different series and drifts with the series: a bursty count series scores high
all day, a flat one never does. Numenta's *anomaly likelihood* (Ahmad et al. 2017,
the stage that lifts HTM from about 50 to 70 on NAB) asks instead how unusual the
*recent* scores are against the *long-term* distribution of scores on the same
series:

- ``m_t`` = mean of the last ``short`` raw scores (a burst of moderate scores
  counts, one noisy spike is damped);
- ``mu_t, sigma_t`` = mean and standard deviation of ``m`` over the previous
  ``long`` rows, so the reference moves with the series (a level or variance shift
  is an anomaly once, then becomes the new normal);
- likelihood = the Gaussian upper-tail probability ``Q((m_t - mu_t) / sigma_t)``,
  reported as ``log(tail) / log(1e-10)`` in [0, 1] (0.5 is a 1e-5 tail), so one
  threshold means the same thing on every series.

A value outside the range of every earlier value (by ``spatial_tolerance`` of that
range, Numenta's 0.05) scores 1 whatever the likelihood says: Numenta's *spatial
anomaly*. *Suppression* then keeps one detection per event: a row scores only if it beats
every score of the previous ``rest`` rows, else 0. With any threshold, a run of
high scores yields its first crossing (and later, higher peaks), not hundreds of
detections; CAD OSE and Numenta's filter do the same.

:class:`Likelihood` wraps any registered detector with both stages, so the
ensemble, ``score_by_group`` and the NAB runner use it like any other detector.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr

from udfs.detectors.base import BaseDetector, check_fraction
from udfs.detectors.registry import create, register

#: Smallest tail probability told apart: scores are log(tail) / log(TAIL_FLOOR).
TAIL_FLOOR = 1e-10


def _check_int(name: str, value: int | None, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def anomaly_likelihood(raw: np.ndarray, learn: int, short: int = 5, long: int = 8640) -> np.ndarray:
    """Per row, in [0, 1]: how unusual the last ``short`` raw scores are (see module doc).

    The first ``learn`` rows (at least 2, at most ``long``) only feed the reference: they
    score a 0.5 tail (about 0.03). The reference is the past only, so a row never judges itself.
    """
    m = pd.Series(np.asarray(raw, dtype=np.float64)).rolling(short, min_periods=1).mean()
    past = m.shift(1).rolling(long, min_periods=min(max(int(learn), 2), long))
    mu, sd = past.mean().to_numpy(), past.std().to_numpy()
    # A constant reference (sd 0) would make any change infinitely unlikely; a tiny
    # floor relative to the level keeps a real change large and a rounding error small.
    sd = np.maximum(np.nan_to_num(sd), 1e-6 * np.abs(np.nan_to_num(mu)) + 1e-12)
    z = (m.to_numpy() - mu) / sd
    tail = np.where(np.isnan(z), 0.5, 1.0 - ndtr(np.nan_to_num(z)))
    return np.clip(np.log(tail + TAIL_FLOOR) / np.log(TAIL_FLOOR), 0.0, 1.0)


def suppress(scores: np.ndarray, rest: int) -> np.ndarray:
    """Zero every score that does not beat all scores of the previous ``rest`` rows."""
    s = np.asarray(scores, dtype=np.float64)
    if rest < 1 or len(s) == 0:
        return s.copy()
    prev = pd.Series(s).shift(1).rolling(rest, min_periods=1).max().to_numpy()
    return np.where(np.isnan(prev) | (s > prev), s, 0.0)


def new_extremes(X: np.ndarray, tolerance: float) -> np.ndarray:
    """Rows where some column leaves the range of all rows before it by ``tolerance`` x range.

    Numenta's detector calls such a value a spatial anomaly (score 1) whatever the
    temporal model says: a sensor reading never seen before is worth one alert.
    """
    values = np.asarray(X, dtype=np.float64)
    frame = pd.DataFrame(values)
    hi = frame.shift(1).cummax().to_numpy()
    lo = frame.shift(1).cummin().to_numpy()
    span = hi - lo
    with np.errstate(invalid="ignore"):
        out = (values > hi + tolerance * span) | (values < lo - tolerance * span)
    return np.asarray(out.any(axis=1) & ~np.isnan(span).any(axis=1))


@register("likelihood")
class Likelihood(BaseDetector):
    """Any detector's raw scores through :func:`anomaly_likelihood` and :func:`suppress`.

    ``base`` / ``base_params`` name the wrapped detector (registry name and its
    params). ``short`` and ``long`` are the averaging and reference windows in rows;
    ``rest`` the suppression span in rows, by default ``rest_fraction`` of the
    training rows (half of NAB's probation); ``learn`` the rows the reference needs
    before it is trusted, by default the training rows. Scores in [0, 1]. Sequential:
    like the series detectors, ``score`` starts from the series' first row (the
    training rows first), and the likelihood of a row uses only the rows before it.
    """

    sequential = True

    def __init__(
        self,
        base: str = "robust_zscore",
        base_params: dict[str, Any] | None = None,
        short: int = 5,
        long: int = 8640,
        rest: int | None = None,
        rest_fraction: float = 0.5,
        learn: int | None = None,
        spatial_tolerance: float | None = 0.05,
    ) -> None:
        if base == "likelihood":
            raise ValueError("likelihood cannot wrap itself")
        self.base = base
        self.base_params = dict(base_params or {})
        create(base, **self.base_params)  # unknown names and bad params fail here
        self.short = _check_int("short", short, 1)
        self.long = _check_int("long", long, 2)
        self.rest = _check_int("rest", rest, 0)
        self.rest_fraction = check_fraction("rest_fraction", rest_fraction)
        self.learn = _check_int("learn", learn, 2)
        if spatial_tolerance is not None and spatial_tolerance < 0.0:
            raise ValueError(f"spatial_tolerance must be >= 0 or None, got {spatial_tolerance!r}")
        self.spatial_tolerance = spatial_tolerance

    def min_rows(self) -> int:
        return create(self.base, **self.base_params).min_rows()

    def _fit(self, X: np.ndarray) -> None:
        self.detector_ = create(self.base, **self.base_params).fit(X)
        self.learn_ = self.learn if self.learn is not None else X.shape[0]
        self.rest_ = self.rest if self.rest is not None else int(self.rest_fraction * X.shape[0])

    def _score(self, X: np.ndarray) -> np.ndarray:
        raw = self.detector_.score(X)
        lik = anomaly_likelihood(raw, self.learn_, int(self.short or 1), int(self.long or 2))
        if self.spatial_tolerance is not None:
            beyond = new_extremes(X, self.spatial_tolerance)
            beyond[: self.learn_] = False
            lik = np.where(beyond, 1.0, lik)
        return suppress(lik, self.rest_)

    def explain(self, X: np.ndarray, top_k: int = 3) -> list[list[tuple[int, float]]]:
        # The stage is monotone in the recent raw scores: the base detector's reasons hold.
        explain = getattr(self.detector_, "explain", None)
        if explain is None:
            raise NotImplementedError(f"{self.base} has no explain()")
        out: list[list[tuple[int, float]]] = explain(X, top_k)
        return out
