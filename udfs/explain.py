"""Attributions of alerted rows by a named method, in severity points that add up.

Every explained row gets one attribution per feature, ``phi``, on an additive
output of its detector (``base + phi.sum() == output``), by the method that is
exact or standard for that detector:

* ``tree_shap`` (Isolation Forest): TreeSHAP of the ``shap`` package on the mean
  path length, exact for the forest; the raw score is ``2 ** (-path / c)``;
* ``max_z_shapley`` (z-score, robust z-score, the series residual and quantile
  detectors): the raw score is ``max_j |z_j|``, whose Shapley values (features
  leaving their centre one at a time) have a closed form;
* ``pca_shapley`` (PCA): the raw score is a quadratic form ``u' A u`` of the
  standardised row's deviation ``u`` from the training mean (``A`` = I for the
  ``distance`` score, the inverse covariance for ``mahalanobis``, the projection
  off the kept components for ``reconstruction``), whose exact Shapley values
  against the training mean are ``u_j (A u)_j``: a feature's own term plus half of
  each interaction it takes part in;
* ``kernel_shap`` (every other detector): KernelSHAP of the ``shap`` package on
  the raw score against a small k-means background of the training rows, with a
  bounded number of coalitions.

Severity is what an analyst reads, so ``phi`` is rescaled to severity points: a
row's parts sum to ``severity(row) - severity(base)``, each feature keeping its
share of the raw-score attribution. An ensemble's parts are its members' parts
times the ensemble weights (:func:`combine`), and add up to the ensemble severity
less the weighted base. Positive means "towards anomalous" for every method.
"""

from __future__ import annotations

import functools
import warnings
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

TREE_SHAP = "tree_shap"
KERNEL_SHAP = "kernel_shap"
MAX_Z_SHAPLEY = "max_z_shapley"
PCA_SHAPLEY = "pca_shapley"

# KernelSHAP cost bounds: background rows (k-means centres of the training rows)
# and coalitions per explained row. Measured (bench/explain.py): tens of ms per
# alert for LOF on 8 features, where the default (2 d + 2048) costs ~0.3 s.
BACKGROUND_ROWS = 8
KERNEL_SAMPLES = 64
# Rows the k-means background is fitted on (sampled, seeded): bounds the fit time.
BACKGROUND_FIT_ROWS = 2000


@dataclass
class Attribution:
    """``phi[i, j]``: part of feature ``j`` in row ``i``'s explained output, positive
    towards anomalous; ``base + phi.sum(axis=1) == output``; ``base_raw`` is the raw
    score of the base (the explained output mapped back to the detector's scale)."""

    method: str
    phi: np.ndarray
    base: np.ndarray
    output: np.ndarray
    base_raw: np.ndarray


def background(X: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small weighted summary of training rows for KernelSHAP: k-means centres
    (each feature rounded to the nearest training value, as ``shap.kmeans`` does)
    and the share of rows in each cluster."""
    X = np.asarray(X, dtype=np.float64)
    if X.shape[0] > BACKGROUND_FIT_ROWS:
        rng = np.random.default_rng(seed)
        X = X[rng.choice(X.shape[0], BACKGROUND_FIT_ROWS, replace=False)]
    k = min(BACKGROUND_ROWS, len(np.unique(X, axis=0)))
    if k <= 1:
        return X[:1].copy(), np.ones(1)
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(X)
    centres = km.cluster_centers_.copy()
    for j in range(X.shape[1]):
        col = np.unique(X[:, j])
        pos = np.clip(np.searchsorted(col, centres[:, j]), 1, len(col) - 1)
        left, right = col[pos - 1], col[pos]
        centres[:, j] = np.where(centres[:, j] - left <= right - centres[:, j], left, right)
    weights = np.bincount(km.labels_, minlength=k).astype(np.float64)
    return centres, weights / weights.sum()


def method_of(detector: Any) -> str:
    """The attribution method used for ``detector`` (see the module docstring)."""
    name = getattr(detector, "name", "")
    if name == "isolation_forest" and hasattr(detector, "model_"):
        return TREE_SHAP
    if name == "pca" and (hasattr(detector, "contributions") or hasattr(detector, "residual")):
        return PCA_SHAPLEY
    if hasattr(detector, "z"):
        return MAX_Z_SHAPLEY
    return KERNEL_SHAP


def attribute(
    detector: Any,
    X: np.ndarray,
    rows: np.ndarray,
    raw: np.ndarray,
    bg: tuple[np.ndarray, np.ndarray] | None,
) -> Attribution | None:
    """Attribution of ``X[rows]`` (``raw``: their raw scores), or None for a series
    detector without per-feature z (e.g. ``gesd``, ``likelihood``): its score of a row
    depends on the rows before it, so no single row can be perturbed alone.

    ``X`` is the whole (imputed) batch: series detectors score a row from the rows
    before it, so their z is computed on the batch and then read at ``rows``.
    A decomposition that does not reproduce the raw score (a detector whose scoring
    changed) falls back to KernelSHAP rather than report parts that do not add up.
    """
    method = method_of(detector)
    if method == TREE_SHAP:
        return _tree_shap(detector, X[rows])
    if method == PCA_SHAPLEY:
        part = pca_shapley(detector, X[rows])
        if _adds_up(part.sum(axis=1), raw):
            zero = np.zeros(len(rows))
            return Attribution(method, part, zero, part.sum(axis=1), zero)
    if method == MAX_Z_SHAPLEY:
        a = np.abs(detector.z(X)[rows] if detector.sequential else detector.z(X[rows]))
        if _adds_up(a.max(axis=1, initial=0.0), raw):
            zero = np.zeros(len(rows))
            return Attribution(method, max_shapley(a), zero, a.max(axis=1, initial=0.0), zero)
    if getattr(detector, "sequential", False):
        return None
    return _kernel_shap(detector, X[rows], bg)


def _adds_up(total: np.ndarray, raw: np.ndarray) -> bool:
    return bool(np.allclose(total, raw, rtol=1e-6, atol=1e-9))


def max_shapley(a: np.ndarray) -> np.ndarray:
    """Exact Shapley values of ``v(S) = max_{j in S} a_j`` (``v({}) = 0``, a >= 0).

    With a row sorted ascending, ``a_(1) <= ... <= a_(d)``, the k-th step of the
    maximum, ``a_(k) - a_(k-1)``, is reached by every coalition holding one of the
    ``d - k + 1`` features at or above it, so it is shared equally among them:
    ``phi_(i) = sum_{k <= i} (a_(k) - a_(k-1)) / (d - k + 1)``.
    """
    d = a.shape[1]
    order = np.argsort(a, axis=1, kind="stable")
    s = np.take_along_axis(a, order, axis=1)
    steps = np.diff(s, axis=1, prepend=0.0) / (d - np.arange(d))
    phi = np.empty_like(a)
    np.put_along_axis(phi, order, np.cumsum(steps, axis=1), axis=1)
    return phi


def pca_shapley(detector: Any, X: np.ndarray) -> np.ndarray:
    """``u_j (A u)_j``: exact Shapley values of the PCA score ``u' A u``, ``u`` the
    row's standardised deviation from the training mean (see the module docstring)."""
    u = (X - detector.mean_) / detector.std_ - detector.model_.mean_
    mode = getattr(detector, "method", "reconstruction")
    if mode == "distance":
        return np.asarray(u * u, dtype=np.float64)
    if mode == "mahalanobis":
        # The detector's own terms are already u_j (C^-1 u)_j.
        return np.asarray(detector.contributions(X), dtype=np.float64)
    terms = getattr(detector, "contributions", None) or detector.residual
    return np.asarray(u * terms(X), dtype=np.float64)


def _tree_shap(detector: Any, X: np.ndarray) -> Attribution:
    from sklearn.ensemble._iforest import _average_path_length

    explainer = _tree_explainer(detector)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sv = np.asarray(explainer.shap_values(X), dtype=np.float64).reshape(X.shape)
    expected = float(np.ravel(explainer.expected_value)[0])
    # TreeSHAP explains the mean path length h (short = anomalous); the raw score is
    # 2 ** (-h / c): phi is the negated SHAP value, base and output the negated h.
    c = float(_average_path_length([detector.model_._max_samples])[0])
    n = X.shape[0]
    return Attribution(
        TREE_SHAP,
        -sv,
        np.full(n, -expected),
        -(expected + sv.sum(axis=1)),
        np.full(n, 2.0 ** (-expected / c)),
    )


# One TreeExplainer per fitted detector object (per worker: the bundle is cached),
# kept beside it rather than on it so it never enters a pickled artifact.
_TREE_EXPLAINERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _tree_explainer(detector: Any) -> Any:
    explainer = _TREE_EXPLAINERS.get(detector)
    if explainer is None:
        import shap

        explainer = _TREE_EXPLAINERS[detector] = shap.TreeExplainer(detector.model_)
    return explainer


def _kernel_shap(
    detector: Any, X: np.ndarray, bg: tuple[np.ndarray, np.ndarray] | None
) -> Attribution:
    import shap

    if bg is None:
        raise ValueError("KernelSHAP needs a background (ModelBundle.background)")
    centres, weights = bg
    data = shap.utils._legacy.DenseData(
        centres, [str(j) for j in range(centres.shape[1])], None, weights.copy()
    )
    explainer = shap.KernelExplainer(detector.score, data)
    d = X.shape[1]
    # Every coalition when there are few features (exact Shapley values), else a
    # bounded sample: the cost per alert stays flat as the feature count grows.
    nsamples = min(2**d - 2, max(KERNEL_SAMPLES, 2 * d + 2)) if d > 1 else 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sv = np.asarray(
            explainer.shap_values(X, nsamples=nsamples, l1_reg=False, silent=True),
            dtype=np.float64,
        ).reshape(X.shape)
    expected = float(np.ravel(explainer.expected_value)[0])
    n = X.shape[0]
    base = np.full(n, expected)
    return Attribution(KERNEL_SHAP, sv, base, expected + sv.sum(axis=1), base.copy())


def to_severity(att: Attribution, severity: np.ndarray, base_severity: np.ndarray) -> np.ndarray:
    """``phi`` rescaled to severity points: each row's parts sum to
    ``severity - base_severity``, each feature keeping its share of ``phi``.

    Bounded by construction: the divisor is at least half of ``sum |phi|``, so no
    part exceeds twice the severity gap (200 points). Only a row whose attributions
    of opposite signs cancel more than half of their size (KernelSHAP noise on a
    row near the base) is scaled by that floor, and its parts then sum to less.
    """
    total = att.phi.sum(axis=1)
    floor = 0.5 * np.abs(att.phi).sum(axis=1)
    gap = np.asarray(severity, dtype=np.float64) - np.asarray(base_severity, dtype=np.float64)
    div = np.where(np.abs(total) >= floor, total, np.where(total < 0, -floor, floor))
    scale = np.divide(gap, div, out=np.zeros_like(gap), where=div != 0)
    return att.phi * scale[:, None]


def combine(parts: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """An ensemble's parts in severity points: ``sum_m w_m * parts_m``, which sum to
    the weighted severity less the weighted base severity of the members."""
    if len(parts) != len(weights) or not parts:
        raise ValueError(f"{len(parts)} member attributions for {len(weights)} weights")
    out = np.zeros_like(np.asarray(parts[0], dtype=np.float64))
    for p, w in zip(parts, weights, strict=True):
        out += float(w) * np.asarray(p, dtype=np.float64)
    return out


def top_k(parts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` feature indexes with the largest |part| and those parts."""
    k = min(k, parts.shape[1])
    order = np.argsort(-np.abs(parts), axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(parts, order, axis=1)


@functools.lru_cache(maxsize=1)
def shap_version() -> str:
    import shap

    return str(shap.__version__)
