"""Detection metrics on numpy arrays: higher score = more anomalous, label 1 = anomaly.

Average precision and ROC-AUC are scikit-learn's (step-wise PR-AUC
``sum (R_n - R_{n-1}) P_n`` with tied scores as one threshold; the trapezoidal ROC
area, i.e. the Mann-Whitney statistic with ties counted half), behind the
conventions every caller relies on: a NaN score ranks lowest (an unscored event is
never detected) and an undefined metric is NaN instead of an exception. The tests
check them against values worked out by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score


def _clean(
    y: Sequence[int] | np.ndarray, s: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    yy = np.asarray(y, dtype=np.int8)
    ss = np.asarray(s, dtype=np.float64)
    if yy.shape != ss.shape or yy.ndim != 1:
        raise ValueError(f"labels {yy.shape} and scores {ss.shape} must be 1-d and equal length")
    # A NaN score ranks lowest: an unscored event never counts as detected.
    ss = np.where(np.isnan(ss), -np.inf, ss)
    return yy, ss


def _ranked(ss: np.ndarray) -> np.ndarray:
    # scikit-learn refuses non-finite scores; both metrics depend only on the order
    # and the ties of the scores, which dense ranks keep (all NaN scores, now -inf,
    # stay one tied group below every other score).
    return rankdata(ss, method="dense")


def average_precision(y: Sequence[int] | np.ndarray, s: Sequence[float] | np.ndarray) -> float:
    """PR-AUC as average precision; NaN when there is no positive."""
    yy, ss = _clean(y, s)
    if int(yy.sum()) == 0:
        return float("nan")
    return float(average_precision_score(yy, _ranked(ss)))


def roc_auc(y: Sequence[int] | np.ndarray, s: Sequence[float] | np.ndarray) -> float:
    """Probability that a random anomaly outscores a random normal row (ties half)."""
    yy, ss = _clean(y, s)
    n_pos = int(yy.sum())
    if n_pos == 0 or n_pos == yy.size:
        return float("nan")
    return float(roc_auc_score(yy, _ranked(ss)))


def precision_at_k(y: Sequence[int] | np.ndarray, s: Sequence[float] | np.ndarray, k: int) -> float:
    """Fraction of anomalies among the ``k`` highest scores (ties broken by position)."""
    yy, ss = _clean(y, s)
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    k = min(k, yy.size)
    if k == 0:
        return float("nan")
    top = np.argsort(-ss, kind="mergesort")[:k]
    return float(yy[top].mean())


def confusion(y: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of a boolean decision."""
    yy = np.asarray(y, dtype=bool)
    ff = np.asarray(flagged, dtype=bool)
    tp = float(np.sum(yy & ff))
    fp = float(np.sum(~yy & ff))
    fn = float(np.sum(yy & ~ff))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def best_f1_cut(
    y: Sequence[int] | np.ndarray, s: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    """The score cut (flag ``s >= cut``) with the highest F1, and that F1."""
    yy, ss = _clean(y, s)
    n_pos = int(yy.sum())
    if n_pos == 0:
        raise ValueError("best_f1_cut needs at least one positive label")
    order = np.argsort(-ss, kind="mergesort")
    ys, sc = yy[order], ss[order]
    # The last row of each group of equal scores; compared, not differenced: the
    # difference of two -inf (NaN) or two +inf scores is NaN, which would split a tie.
    last = np.r_[np.flatnonzero(sc[1:] != sc[:-1]), ys.size - 1]
    tp = np.cumsum(ys)[last]
    flagged = last + 1
    f1 = 2 * tp / (flagged + n_pos)
    i = int(np.argmax(f1))
    return float(sc[last[i]]), float(f1[i])


def summary(
    y: np.ndarray, s: np.ndarray, flagged: np.ndarray, ks: Sequence[int] = (100,)
) -> dict[str, float]:
    """Every ranking and decision metric of one detector on one labelled sample."""
    out = confusion(y, flagged)
    out["pr_auc"] = average_precision(y, s)
    out["roc_auc"] = roc_auc(y, s)
    for k in ks:
        out[f"precision_at_{k}"] = precision_at_k(y, s, k)
    out["rows"] = float(len(y))
    out["positives"] = float(np.sum(y))
    out["alerts"] = float(np.sum(flagged))
    return out


def stored(v: float | None) -> float | None:
    """A metric as a Delta / JSON value: NaN and infinities become null.

    An undefined metric (no positive, empty sample) is NaN in numpy; stored it
    must read as "missing", not as a number that sorts or averages.
    """
    return None if v is None or not math.isfinite(v) else float(v)


def card_precision_at_k(
    days: np.ndarray, cards: np.ndarray, y: np.ndarray, s: np.ndarray, k: int = 100
) -> float:
    """Fraud Detection Handbook's daily card precision@k, averaged over days.

    Per day, each card gets its highest score and is fraudulent if any of its
    transactions is; the ``k`` top cards are what investigators can check.
    """
    import pandas as pd

    df = pd.DataFrame({"d": days, "c": cards, "y": np.asarray(y, dtype=int), "s": s})
    per_card = df.groupby(["d", "c"], sort=False).agg(y=("y", "max"), s=("s", "max")).reset_index()
    values = [
        float(g.sort_values("s", ascending=False, kind="mergesort").head(k)["y"].mean())
        for _, g in per_card.groupby("d")
    ]
    return float(np.mean(values)) if values else float("nan")
