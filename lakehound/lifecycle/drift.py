"""Distribution drift between a reference (training) sample and a recent one.

Population stability index on the reference's decile bins (the industry rule of
thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 significant) and the two-sample
Kolmogorov-Smirnov statistic (largest gap between the empirical CDFs).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import ks_2samp

# A bin that is empty on one side would make PSI infinite; this floor keeps it finite.
EPS = 1e-4


def _finite(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


def psi(reference: np.ndarray, recent: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``recent`` against ``reference``.

    Bin edges are the reference's quantiles (deduplicated, so a feature with few
    distinct values gets fewer bins); the outer bins are open-ended.
    """
    ref, cur = _finite(reference), _finite(recent)
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1))[1:-1])
    p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=edges.size + 1)
    q = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=edges.size + 1)
    p = np.maximum(p / ref.size, EPS)
    q = np.maximum(q / cur.size, EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_statistic(reference: np.ndarray, recent: np.ndarray) -> float:
    """Two-sample KS statistic: sup |F_ref(x) - F_recent(x)| over the finite values."""
    ref, cur = _finite(reference), _finite(recent)
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    # method="asymp": the statistic is the same whatever the method; only the
    # p-value (unused here) differs, and its exact form is quadratic in the sizes.
    return float(ks_2samp(ref, cur, method="asymp").statistic)


def level(psi_value: float, moderate: float, significant: float) -> str:
    """``stable``, ``moderate`` or ``significant`` for a PSI value."""
    if not np.isfinite(psi_value) or psi_value < moderate:
        return "stable"
    return "moderate" if psi_value < significant else "significant"
