"""NAB (Numenta Anomaly Benchmark) scoring rules, and a runner for the series detectors.

Scoring follows NAB v1.1's sweeper:

- the first ``min(floor(0.15 n), 750)`` rows of a series are probation: detections
  there count for nothing;
- a detection inside an anomaly window scores ``A * sigmoid`` of its relative position
  (``2 / (1 + exp(5 x)) - 1`` with ``x = -(right - i + 1) / width``: ~0.987 at the window
  start, 0 at its end); only the best (earliest) detection of a window counts;
- a detection outside every window costs ``fp_weight`` times the same sigmoid of its
  distance past the previous window (``-1`` if no window precedes it or it is more than
  3 window widths past it);
- a window without detection costs ``fn_weight``;
- the corpus total is normalised so the null detector scores 0 and the perfect one
  (a detection on the first row of every window) 100;
- one threshold per detector and profile, optimised over the whole corpus.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from udfs.calibration import Threshold
from udfs.series import fit_score_group, probation_rows

DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"

PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "low_fp": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "low_fn": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}


def scaled_sigmoid(x: np.ndarray | float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0)


@dataclass(frozen=True)
class LabelledSeries:
    """One NAB series: values in time order, the window id of each row (-1 outside)."""

    name: str
    timestamps: np.ndarray
    values: np.ndarray
    window: np.ndarray
    n_windows: int
    # Filled by __post_init__: what a detection on each row is worth (row_weights).
    unweighted: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "unweighted", row_weights(self.window))

    @property
    def probation(self) -> int:
        return probation_rows(len(self.values))


def load_corpus(data_dir: Path = DATA_DIR) -> list[LabelledSeries]:
    windows = json.loads((data_dir / "windows.json").read_text())
    out = []
    for key in sorted(windows):
        df = pd.read_csv(data_dir / "data" / key, parse_dates=["timestamp"])
        ts = df["timestamp"].to_numpy()
        win = np.full(len(df), -1)
        for w, (start, end) in enumerate(windows[key]):
            inside = (ts >= np.datetime64(pd.Timestamp(start))) & (
                ts <= np.datetime64(pd.Timestamp(end))
            )
            win[inside] = w
        out.append(
            LabelledSeries(key, ts, df["value"].to_numpy(np.float64), win, len(windows[key]))
        )
    return out


def row_weights(window: np.ndarray) -> np.ndarray:
    """Per row: the unweighted sigmoid score a detection there would get (window id per row)."""
    n = len(window)
    unweighted = np.full(n, -1.0)
    prev_right: int | None = None
    prev_width = 0
    i = 0
    while i < n:
        w = window[i]
        if w >= 0:
            right = i
            while right + 1 < n and window[right + 1] == w:
                right += 1
            width = right - i + 1
            idx = np.arange(i, right + 1)
            unweighted[idx] = scaled_sigmoid(-(right - idx + 1) / width)
            prev_right, prev_width = right, width
            i = right + 1
            continue
        if prev_right is not None:
            unweighted[i] = scaled_sigmoid(abs(prev_right - i) / max(prev_width - 1, 1))
        i += 1
    return unweighted


def score_series(
    series: LabelledSeries, detections: np.ndarray, profile: dict[str, float]
) -> float:
    """Raw (unnormalised) NAB score of boolean ``detections`` on one series."""
    unweighted, in_window = series.unweighted, series.window >= 0
    scored = np.asarray(detections, dtype=bool).copy()
    scored[: series.probation] = False
    total = 0.0
    hit_windows = series.window[scored & in_window]
    for w in range(series.n_windows):
        if (hit_windows == w).any():
            # The earliest detection has the highest sigmoid: max == first.
            total += profile["tp"] * unweighted[scored & (series.window == w)].max()
        else:
            total -= profile["fn"]
    fp = scored & ~in_window
    total += profile["fp"] * unweighted[fp].sum()
    return float(total)


def normalised(
    corpus: list[LabelledSeries], detections: list[np.ndarray], profile: dict[str, float]
) -> float:
    raw = sum(score_series(s, d, profile) for s, d in zip(corpus, detections, strict=True))
    null = sum(score_series(s, np.zeros(len(s.values), bool), profile) for s in corpus)
    perfect = 0.0
    for s in corpus:
        d = np.zeros(len(s.values), bool)
        for w in range(s.n_windows):
            d[np.flatnonzero(s.window == w)[:1]] = True
        perfect += score_series(s, d, profile)
    return 100.0 * (raw - null) / (perfect - null)


def unit_scores(raw: np.ndarray, train_rows: int) -> np.ndarray:
    """Raw scores -> [0, 1): ``u / (1 + u)`` with ``u = raw / max(training raw)``.

    Monotone per series, 0.5 at the largest score seen in training, and unlike an
    empirical CDF it keeps ranking the scores beyond the training maximum.
    """
    ref = float(np.max(raw[:train_rows])) if train_rows else float(np.max(raw))
    u = np.maximum(raw, 0.0) / max(ref, 1e-12)
    return u / (1.0 + u)


def detector_scores(
    corpus: list[LabelledSeries], detector: str, params: dict[str, Any] | None = None
) -> list[np.ndarray]:
    """Fit ``detector`` on each series' probation rows and score the whole series, in [0, 1)."""
    out = []
    for s in corpus:
        p = dict(params or {})
        if detector == "holt_winters" and "period" not in p:
            p["period"] = rows_per_day(s)
        res = fit_score_group(s.values, detector, p, Threshold("quantile", 0.99), s.probation)
        train = max(s.probation, 1)
        out.append(unit_scores(res["raw_score"].to_numpy(), train))
    return out


def rows_per_day(series: LabelledSeries) -> int:
    step = np.median(np.diff(series.timestamps).astype("timedelta64[s]").astype(float))
    return max(2, round(float(86400.0 / max(step, 1.0))))


def optimise(
    corpus: list[LabelledSeries], scores: list[np.ndarray], profile: dict[str, float]
) -> tuple[float, float]:
    """Best (threshold, normalised score) over a grid of pooled score quantiles."""
    pooled = np.concatenate(scores)
    grid = np.unique(np.quantile(pooled, np.linspace(0.9, 1.0, 201)))
    best = (math.inf, normalised(corpus, [np.zeros(len(x), bool) for x in scores], profile))
    for thr in grid:
        val = normalised(corpus, [x >= thr for x in scores], profile)
        if val > best[1]:
            best = (float(thr), val)
    return best


def run(
    detectors: dict[str, dict[str, Any]], data_dir: Path = DATA_DIR
) -> dict[str, dict[str, dict[str, float]]]:
    """{detector: {profile: {"score": normalised 0-100, "threshold": t}}}."""
    corpus = load_corpus(data_dir)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, params in detectors.items():
        scores = detector_scores(corpus, name, params)
        out[name] = {}
        for prof, weights in PROFILES.items():
            thr, val = optimise(corpus, scores, weights)
            out[name][prof] = {"score": round(val, 2), "threshold": thr}
    return out
