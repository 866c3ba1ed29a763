"""PCA and LOF scores against values computed here with numpy / scikit-learn directly."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import LocalOutlierFactor

from udfs.detectors.registry import create


def _correlated(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cov = [[4.0, 1.9, 0.0], [1.9, 1.0, 0.0], [0.0, 0.0, 0.25]]
    return rng.multivariate_normal([10, -3, 0], cov, size=300), rng.multivariate_normal(
        [10, -3, 0], cov, size=50
    )


def test_pca_distance_is_the_squared_standardised_norm() -> None:
    train, test = _correlated()
    z = (test - train.mean(axis=0)) / train.std(axis=0)
    got = create("pca").fit(train).score(test)
    np.testing.assert_allclose(got, (z**2).sum(axis=1), rtol=1e-9)


def test_pca_mahalanobis_is_hotelling_t2() -> None:
    train, test = _correlated()
    mu, sd = train.mean(axis=0), train.std(axis=0)
    zt, z = (train - mu) / sd, (test - mu) / sd
    inv = np.linalg.inv(np.cov(zt, rowvar=False))  # PCA's variances use n - 1 too
    d = z - zt.mean(axis=0)
    expected = np.einsum("ij,jk,ik->i", d, inv, d)
    det = create("pca", method="mahalanobis").fit(train)
    np.testing.assert_allclose(det.score(test), expected, rtol=1e-8)


@pytest.mark.parametrize("method", ["distance", "mahalanobis", "reconstruction"])
def test_pca_explanations_are_the_terms_of_the_score(method: str) -> None:
    train, test = _correlated()
    det = create("pca", method=method, n_components=1).fit(train)
    c = det.contributions(test)  # type: ignore[attr-defined]
    terms = c if method == "mahalanobis" else c**2
    np.testing.assert_allclose(terms.sum(axis=1), det.score(test), rtol=1e-8)


def test_pca_distance_sees_what_the_reconstruction_error_misses() -> None:
    # Far out along the main (correlated) axis: inside the principal subspace, so its
    # reconstruction error is small, but it is 4+ standard deviations from the centre.
    train, _ = _correlated()
    along = np.array([[10 + 4 * 2.0, -3 + 4 * 0.95, 0.0]])
    rec = create("pca", method="reconstruction", n_components=1).fit(train)
    dist = create("pca").fit(train)
    assert rec.score(along)[0] < np.quantile(rec.score(train), 0.9)
    assert dist.score(along)[0] > dist.score(train).max()


def test_pca_rejects_unknown_method() -> None:
    with pytest.raises(ValueError, match="method must be one of"):
        create("pca", method="kernel")


@pytest.mark.parametrize("scaling", ["minmax", "standard"])
def test_lof_scales_as_configured(scaling: str) -> None:
    train, test = _correlated()
    if scaling == "minmax":
        lo, span = train.min(axis=0), train.max(axis=0) - train.min(axis=0)
    else:
        lo, span = train.mean(axis=0), train.std(axis=0)
    ref = LocalOutlierFactor(n_neighbors=20, novelty=True).fit((train - lo) / span)
    params = {} if scaling == "minmax" else {"scaling": "standard"}  # min-max is the default
    got = create("lof", **params).fit(train).score(test)
    np.testing.assert_allclose(got, -ref.score_samples((test - lo) / span), rtol=1e-9)


def test_lof_rejects_unknown_scaling() -> None:
    with pytest.raises(ValueError, match="scaling must be one of"):
        create("lof", scaling="robust")
