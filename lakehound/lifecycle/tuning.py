"""Automatic tuning of a detector on labelled rows, with a time-ordered validation split.

The earliest ``1 - valid_fraction`` of the rows (by event time) fit the detector,
with labelled anomalies left out (a detector of "normal" must not learn the fraud);
the latest rows validate. Each grid point is scored by average precision (PR-AUC)
on the validation rows; the winner's alert threshold is the cut with the best F1
on validation, expressed as the contamination of the training scores so the final
refit on the whole window reproduces it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lakehound.lifecycle import metrics
from udfs.bundle import ModelBundle
from udfs.calibration import Threshold

# Searched when the config gives no grid for a detector: its main hyperparameters.
DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "isolation_forest": {"n_estimators": [100, 200], "max_samples": [256, 1024]},
    "zscore": {},
    "robust_zscore": {},
}
# Contamination is kept inside this range so a noisy validation set cannot turn a
# detector off or make it flag half the traffic.
MIN_CONTAMINATION, MAX_CONTAMINATION = 1e-4, 0.2


def time_split(ts: np.ndarray, valid_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the earlier (fit) and later (validation) rows; never a random split."""
    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    order = np.argsort(np.asarray(ts), kind="mergesort")
    cut = round(len(order) * (1 - valid_fraction))
    return order[:cut], order[cut:]


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    if not grid:
        return [{}]
    keys = sorted(grid)
    return [
        dict(zip(keys, vals, strict=True)) for vals in itertools.product(*(grid[k] for k in keys))
    ]


@dataclass(frozen=True)
class Trial:
    params: dict[str, Any]
    pr_auc: float


@dataclass(frozen=True)
class Tuned:
    params: dict[str, Any]
    contamination: float
    valid_pr_auc: float
    valid_f1: float
    trials: list[Trial] = field(default_factory=list)


def tune(
    detector: str,
    base_params: dict[str, Any],
    grid: dict[str, list[Any]],
    features: list[str],
    X: np.ndarray,
    y: np.ndarray,
    ts: np.ndarray,
    valid_fraction: float = 0.3,
) -> Tuned:
    """Best params (PR-AUC on the later rows) and the F1-best contamination for them."""
    fit_idx, valid_idx = time_split(ts, valid_fraction)
    y = np.asarray(y, dtype=np.int8)
    fit_idx = fit_idx[y[fit_idx] == 0]
    if int(y[valid_idx].sum()) == 0:
        raise ValueError("the validation split has no labelled anomaly; cannot tune")
    if fit_idx.size < 2:
        raise ValueError("the fit split has fewer than 2 normal rows; cannot tune")
    loose = Threshold("contamination", 0.01)
    trials: list[Trial] = []
    best: tuple[float, dict[str, Any], ModelBundle] | None = None
    for point in grid_points(grid):
        params = {**base_params, **point}
        bundle = ModelBundle.fit(detector, params, features, X[fit_idx], loose)
        ap = metrics.average_precision(y[valid_idx], bundle.score(X[valid_idx]).raw)
        trials.append(Trial(params, ap))
        # Strictly better only: on ties the earlier (usually cheaper) grid point stays.
        if best is None or (not math.isnan(ap) and (math.isnan(best[0]) or ap > best[0])):
            best = (ap, params, bundle)
    assert best is not None
    ap, params, bundle = best
    cut, f1 = metrics.best_f1_cut(y[valid_idx], bundle.score(X[valid_idx]).raw)
    train_raw = bundle.score(X[fit_idx]).raw
    contamination = float(np.mean(train_raw >= cut))
    contamination = min(max(contamination, MIN_CONTAMINATION), MAX_CONTAMINATION)
    return Tuned(params, contamination, ap, f1, trials)
