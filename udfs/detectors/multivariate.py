"""Multivariate detectors over tabular features (besides Isolation Forest), wrapping scikit-learn.

Each one standardises its inputs with the training mean and standard deviation
first: densities, distances and reconstructions would otherwise be dominated by
whichever feature has the largest unit. Raw scores are oriented so that higher
means more anomalous (scikit-learn's "higher is normal" scores are negated).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import DBSCAN, KMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import SGDOneClassSVM
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.neural_network import MLPRegressor

from udfs.detectors.base import BaseDetector, check_fraction, check_positive, top_k_by_abs
from udfs.detectors.registry import register


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class _Scaled(BaseDetector):
    """Standardise with training statistics before the model sees the data."""

    def _fit(self, X: np.ndarray) -> None:
        self.mean_ = X.mean(axis=0)
        self.std_ = np.where(X.std(axis=0) > 1e-12, X.std(axis=0), 1.0)
        self._fit_scaled((X - self.mean_) / self.std_)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self._score_scaled((X - self.mean_) / self.std_)

    def _fit_scaled(self, Z: np.ndarray) -> None:
        raise NotImplementedError

    def _score_scaled(self, Z: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@register("gmm")
class GaussianMixtureDensity(_Scaled):
    """Negative log-likelihood under a Gaussian mixture."""

    def __init__(
        self, n_components: int = 4, covariance_type: str = "full", random_state: int = 0
    ) -> None:
        self.n_components = _check_int("n_components", n_components, 1)
        if covariance_type not in ("full", "tied", "diag", "spherical"):
            raise ValueError(
                f"covariance_type must be full|tied|diag|spherical, got {covariance_type!r}"
            )
        self.covariance_type = covariance_type
        self.random_state = int(random_state)

    def min_rows(self) -> int:
        return max(2, self.n_components)

    def _fit_scaled(self, Z: np.ndarray) -> None:
        self.model_ = GaussianMixture(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            reg_covar=1e-4,
            random_state=self.random_state,
        ).fit(Z)

    def _score_scaled(self, Z: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(Z)


@register("ocsvm")
class ScalableOCSVM(_Scaled):
    """One-Class SVM that scales: Nystroem RBF features + linear SGD one-class SVM (O(n))."""

    def __init__(
        self,
        nu: float = 0.1,
        gamma: float | None = None,
        n_components: int = 200,
        random_state: int = 0,
    ) -> None:
        self.nu = check_fraction("nu", nu)
        self.gamma = None if gamma is None else check_positive("gamma", gamma)
        self.n_components = _check_int("n_components", n_components, 1)
        self.random_state = int(random_state)

    def _fit_scaled(self, Z: np.ndarray) -> None:
        # gamma = 1 / n_features is scikit-learn's 'scale' for standardised data.
        gamma = self.gamma if self.gamma is not None else 1.0 / Z.shape[1]
        self.map_ = Nystroem(
            gamma=gamma,
            n_components=min(self.n_components, Z.shape[0]),
            random_state=self.random_state,
        ).fit(Z)
        self.model_ = SGDOneClassSVM(
            nu=self.nu, random_state=self.random_state, max_iter=1000, tol=1e-4
        ).fit(self.map_.transform(Z))

    def _score_scaled(self, Z: np.ndarray) -> np.ndarray:
        return -self.model_.decision_function(self.map_.transform(Z))


@register("lof")
class LOFNovelty(_Scaled):
    """Local Outlier Factor in novelty mode (fitted on training rows, scores new rows)."""

    def __init__(self, n_neighbors: int = 20) -> None:
        self.n_neighbors = _check_int("n_neighbors", n_neighbors, 1)

    def _fit_scaled(self, Z: np.ndarray) -> None:
        self.model_ = LocalOutlierFactor(
            n_neighbors=min(self.n_neighbors, Z.shape[0] - 1), novelty=True
        ).fit(Z)

    def _score_scaled(self, Z: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(Z)


@register("pca")
class PCAReconstruction(_Scaled):
    """Squared reconstruction error from the top principal components.

    ``n_components`` < 1 keeps that fraction of variance. ``explain`` gives the
    per-feature residual in standard deviations: the features the principal
    subspace cannot reproduce.
    """

    def __init__(self, n_components: float = 0.9, random_state: int = 0) -> None:
        n_components = check_positive("n_components", n_components)
        if n_components >= 1 and n_components != int(n_components):
            raise ValueError(
                f"n_components must be a fraction < 1 or an integer, got {n_components!r}"
            )
        self.n_components = n_components
        self.random_state = int(random_state)

    def _fit_scaled(self, Z: np.ndarray) -> None:
        full = PCA(random_state=self.random_state).fit(Z)
        if self.n_components < 1:
            k = (
                int(np.searchsorted(np.cumsum(full.explained_variance_ratio_), self.n_components))
                + 1
            )
        else:
            k = int(self.n_components)
        # Keeping every component would reconstruct everything (error 0): leave at
        # least one residual direction.
        k = max(1, min(k, Z.shape[1] - 1, Z.shape[0] - 1))
        self.model_ = PCA(n_components=k, random_state=self.random_state).fit(Z)

    def residual(self, X: np.ndarray) -> np.ndarray:
        Z = (X - self.mean_) / self.std_
        return Z - self.model_.inverse_transform(self.model_.transform(Z))

    def _score(self, X: np.ndarray) -> np.ndarray:
        return (self.residual(X) ** 2).sum(axis=1)

    def explain(self, X: np.ndarray, top_k: int = 3) -> list[list[tuple[int, float]]]:
        return top_k_by_abs(self.residual(self._check(X, fitting=False)), top_k)


@register("kmeans")
class KMeansDistance(_Scaled):
    """Distance to the nearest k-means centroid."""

    def __init__(self, n_clusters: int = 8, random_state: int = 0) -> None:
        self.n_clusters = _check_int("n_clusters", n_clusters, 1)
        self.random_state = int(random_state)

    def min_rows(self) -> int:
        return max(2, self.n_clusters)

    def _fit_scaled(self, Z: np.ndarray) -> None:
        self.model_ = KMeans(
            n_clusters=self.n_clusters, n_init=3, random_state=self.random_state
        ).fit(Z)

    def _score_scaled(self, Z: np.ndarray) -> np.ndarray:
        return self.model_.transform(Z).min(axis=1)


@register("dbscan")
class DBSCANDensity(_Scaled):
    """DBSCAN-style density: distance to the nearest core point, in units of ``eps``.

    Training rows (at most ``max_samples``, sampled with the seed) are clustered
    with DBSCAN; a new row scores its distance to the closest core sample divided
    by ``eps``, so > 1 means DBSCAN would call it noise. With ``eps=None`` it is
    the ``eps_quantile`` of the training rows' ``min_samples``-th neighbour distance.
    """

    def __init__(
        self,
        eps: float | None = None,
        min_samples: int = 10,
        eps_quantile: float = 0.9,
        max_samples: int = 5000,
        random_state: int = 0,
    ) -> None:
        self.eps = None if eps is None else check_positive("eps", eps)
        self.min_samples = _check_int("min_samples", min_samples, 1)
        self.eps_quantile = check_fraction("eps_quantile", eps_quantile)
        self.max_samples = _check_int("max_samples", max_samples, 10)
        self.random_state = int(random_state)

    def _fit_scaled(self, Z: np.ndarray) -> None:
        rng = np.random.default_rng(self.random_state)
        if Z.shape[0] > self.max_samples:
            Z = Z[rng.choice(Z.shape[0], self.max_samples, replace=False)]
        k = min(self.min_samples, Z.shape[0] - 1)
        if self.eps is None:
            dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(Z).kneighbors(Z)
            eps = float(np.quantile(dist[:, k], self.eps_quantile))
        else:
            eps = self.eps
        self.eps_ = max(eps, 1e-9)
        db = DBSCAN(eps=self.eps_, min_samples=k + 1).fit(Z)
        core = Z[db.core_sample_indices_] if len(db.core_sample_indices_) else Z
        self.core_ = NearestNeighbors(n_neighbors=1).fit(core)

    def _score_scaled(self, Z: np.ndarray) -> np.ndarray:
        dist, _ = self.core_.kneighbors(Z)
        return dist[:, 0] / self.eps_


@register("autoencoder")
class AutoencoderReconstruction(_Scaled):
    """Reconstruction error of a small dense autoencoder (scikit-learn MLPRegressor, X -> X).

    ``explain`` gives each feature's reconstruction residual in standard deviations.
    """

    def __init__(
        self,
        hidden: int = 16,
        bottleneck: int = 4,
        max_iter: int = 200,
        alpha: float = 1e-4,
        random_state: int = 0,
    ) -> None:
        self.hidden = _check_int("hidden", hidden, 1)
        self.bottleneck = _check_int("bottleneck", bottleneck, 1)
        self.max_iter = _check_int("max_iter", max_iter, 1)
        self.alpha = check_positive("alpha", alpha, allow_zero=True)
        self.random_state = int(random_state)

    def _fit_scaled(self, Z: np.ndarray) -> None:
        bottleneck = min(self.bottleneck, max(1, Z.shape[1] - 1))
        self.model_ = MLPRegressor(
            hidden_layer_sizes=(self.hidden, bottleneck, self.hidden),
            alpha=self.alpha,
            max_iter=self.max_iter,
            early_stopping=Z.shape[0] >= 50,
            random_state=self.random_state,
        )
        with warnings.catch_warnings():
            # A capped iteration count is a deliberate cost bound, not an error.
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model_.fit(Z, Z)

    def residual(self, X: np.ndarray) -> np.ndarray:
        Z = (X - self.mean_) / self.std_
        return Z - self.model_.predict(Z).reshape(Z.shape)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return (self.residual(X) ** 2).mean(axis=1)

    def explain(self, X: np.ndarray, top_k: int = 3) -> list[list[tuple[int, float]]]:
        return top_k_by_abs(self.residual(self._check(X, fitting=False)), top_k)
