"""Faithful explanations: planted anomalies, each in one known feature, are explained
by that feature; attributions add up to the score and, in severity points, to the
severity; TreeSHAP reproduces scikit-learn's path lengths."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import Column, DataFrame

from lakehound.config import Config
from lakehound.scoring import Member, score_pandas
from udfs import explain
from udfs.bundle import ModelBundle
from udfs.calibration import Threshold

D = 4
FEATURES = [f"f{j}" for j in range(D)]
PER_FEATURE = 12


def _data(seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training rows, test rows whose first ``D * PER_FEATURE`` rows each have one
    feature moved 6-8 standard deviations (which: ``planted``), then clean rows."""
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(1000, D))
    n = D * PER_FEATURE
    test = rng.normal(size=(n + 100, D))
    planted = np.arange(n) % D
    test[np.arange(n), planted] += rng.choice([-1.0, 1.0], n) * rng.uniform(6.0, 8.0, n)
    return train, test, planted


TRAIN, TEST, PLANTED = _data()
N_PLANTED = len(PLANTED)

# One detector per family, with the method it must be explained by.
FAMILIES = {
    "zscore": ({}, explain.MAX_Z_SHAPLEY),
    "robust_zscore": ({}, explain.MAX_Z_SHAPLEY),
    "isolation_forest": ({"n_estimators": 200}, explain.TREE_SHAP),
    "pca": ({"n_components": 2}, explain.PCA_SHAPLEY),
    "autoencoder": ({"max_iter": 60}, explain.KERNEL_SHAP),
    "lof": ({}, explain.KERNEL_SHAP),
    "gmm": ({}, explain.KERNEL_SHAP),
    "kmeans": ({}, explain.KERNEL_SHAP),
    "ocsvm": ({}, explain.KERNEL_SHAP),
}


@pytest.fixture(scope="module")
def bundles() -> dict[str, ModelBundle]:
    return {
        name: ModelBundle.fit(name, params, FEATURES, TRAIN, Threshold("contamination", 0.02))
        for name, (params, _) in FAMILIES.items()
    }


def _hit_rate(top: np.ndarray, alerted: np.ndarray) -> float:
    return float(np.mean(top[alerted] == PLANTED[alerted]))


def _clear(phi: np.ndarray) -> np.ndarray:
    """Rows whose attributions do not mostly cancel (the rescaling is then exact)."""
    return np.asarray(phi.sum(axis=1) >= 0.5 * np.abs(phi).sum(axis=1))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_planted_feature_ranks_first(bundles: dict[str, ModelBundle], name: str) -> None:
    bundle = bundles[name]
    scored = bundle.score(TEST, top_k=2)
    assert scored.method == FAMILIES[name][1]
    alerted = np.flatnonzero(scored.is_anomaly[:N_PLANTED])
    assert len(alerted) >= 8, f"{name} alerted only {len(alerted)} planted rows"
    top = np.array([FEATURES.index(scored.explanation[i][0][0]) for i in alerted])
    assert np.mean(top == PLANTED[alerted]) >= 0.9
    # Clean rows that are not alerted carry no explanation.
    quiet = np.flatnonzero(~scored.is_anomaly)
    assert all(scored.explanation[i] == [] for i in quiet)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_parts_add_up_and_stay_readable(bundles: dict[str, ModelBundle], name: str) -> None:
    bundle = bundles[name]
    rows = np.flatnonzero(bundle.score(TEST, top_k=0).is_anomaly)
    ex = bundle.explain(TEST, rows)
    att = ex.attribution
    # On the explained output: base + sum of the attributions is the output, and the
    # output is the detector's own score (for TreeSHAP: its path length, below).
    np.testing.assert_allclose(att.base + att.phi.sum(axis=1), att.output, atol=1e-6)
    if att.method != explain.TREE_SHAP:
        raw = bundle.detector.score(TEST[rows])
        np.testing.assert_allclose(att.output, raw, rtol=1e-9, atol=1e-9)
    # In severity points: bounded, and adding up to severity - base severity for
    # every alert whose attributions do not mostly cancel.
    assert np.all(np.abs(ex.parts) <= 200.0)
    gap = ex.severity - ex.base_severity
    clear = _clear(att.phi)
    assert clear.mean() >= 0.9
    np.testing.assert_allclose(ex.parts.sum(axis=1)[clear], gap[clear], atol=1e-6)
    assert np.all(ex.severity < 100.0)


def test_tree_shap_is_additive_on_path_length() -> None:
    bundle = ModelBundle.fit(
        "isolation_forest", {"n_estimators": 50}, FEATURES, TRAIN, Threshold("contamination", 0.02)
    )
    rows = np.arange(30)
    att = bundle.explain(TEST, rows).attribution
    model = bundle.detector.model_  # type: ignore[attr-defined]
    # scikit-learn: score_samples = -2 ** (-h / c(max_samples)), h the mean path length.
    n = model._max_samples
    c = 2.0 * (np.log(n - 1.0) + np.euler_gamma) - 2.0 * (n - 1.0) / n
    h = -np.log2(-model.score_samples(TEST[rows])) * c
    # phi is the negated SHAP value (a shorter path is more anomalous).
    np.testing.assert_allclose(-(att.base + att.phi.sum(axis=1)), h, atol=1e-6)
    np.testing.assert_allclose(2.0 ** (att.base[0] / c), att.base_raw[0], rtol=1e-12)


def test_max_z_shapley_matches_enumeration() -> None:
    # Shapley values of v(S) = max_{j in S} a_j by brute force over all orderings.
    import itertools

    a = np.array([[0.5, 3.0, 1.0, 3.0], [2.0, 0.0, 0.0, 0.1]])
    for row in range(len(a)):
        phi = np.zeros(D)
        perms = list(itertools.permutations(range(D)))
        for perm in perms:
            best = 0.0
            for j in perm:
                phi[j] += max(best, a[row, j]) - best
                best = max(best, a[row, j])
        np.testing.assert_allclose(explain.max_shapley(a[row : row + 1])[0], phi / len(perms))


@pytest.mark.slow
def test_ensemble_parts_add_up_and_name_the_planted_feature(
    bundles: dict[str, ModelBundle],
) -> None:
    members = {"robust_zscore": 0.4, "isolation_forest": 0.3, "lof": 0.3}
    explained = {m: bundles[m].explain(TEST) for m in members}
    severity = np.sum([w * explained[m].severity for m, w in members.items()], axis=0)
    base = np.sum([w * explained[m].base_severity for m, w in members.items()], axis=0)
    parts = explain.combine([explained[m].parts for m in members], list(members.values()))
    alerted = np.flatnonzero(severity[:N_PLANTED] >= 95.0)
    assert len(alerted) >= 20
    assert _hit_rate(np.argmax(np.abs(parts), axis=1), alerted) >= 0.9
    clear = alerted[np.all([_clear(e.attribution.phi)[alerted] for e in explained.values()], 0)]
    assert len(clear) >= 0.9 * len(alerted)
    np.testing.assert_allclose(parts[clear].sum(axis=1), (severity - base)[clear], atol=1e-6)


def test_scores_alone_compute_no_attribution() -> None:
    bundle = ModelBundle.fit("zscore", {}, FEATURES, TRAIN, Threshold("static", 4.0))
    scored = bundle.score(TEST)
    assert scored.is_anomaly[:N_PLANTED].all()
    assert "_explained" not in vars(scored)  # reading scores did not explain anything
    assert scored.method == explain.MAX_Z_SHAPLEY
    assert "_explained" in vars(scored)
    assert FEATURES.index(scored.explanation[0][0][0]) == PLANTED[0]


def test_series_detector_without_z_alerts_without_explanation() -> None:
    # gesd scores a row from the rows around it: no single-row attribution exists.
    bundle = ModelBundle.fit("gesd", {}, FEATURES, TRAIN, Threshold("contamination", 0.02))
    scored = bundle.score(TEST)
    assert scored.is_anomaly.any()
    assert scored.method == "" and all(e == [] for e in scored.explanation)
    arrays = bundle.score_arrays(TEST)
    assert arrays.method == -1 and np.all(arrays.feature == -1)
    with pytest.raises(ValueError, match="gesd scores rows in sequence"):
        bundle.explain(TEST)


@pytest.mark.parametrize("mode", ["distance", "mahalanobis", "reconstruction"])
def test_pca_shapley_is_exact_for_every_pca_score(mode: str) -> None:
    params = {"method": mode, "n_components": 2}
    bundle = ModelBundle.fit("pca", params, FEATURES, TRAIN, Threshold("contamination", 0.02))
    ex = bundle.explain(TEST, np.arange(N_PLANTED))
    # No fallback to KernelSHAP: the closed form reproduced the detector's own score.
    assert ex.method == explain.PCA_SHAPLEY
    raw = bundle.detector.score(TEST[:N_PLANTED])
    np.testing.assert_allclose(ex.attribution.phi.sum(axis=1), raw, rtol=1e-9)
    top = np.argmax(ex.parts, axis=1)
    assert np.mean(top == PLANTED) >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("ensemble", ["weighted", "max"])
def test_scoring_core_ensemble_explanation_names_the_planted_feature(
    bundles: dict[str, ModelBundle], make_cfg: Callable[..., Config], ensemble: str
) -> None:
    """The ensemble explanation the scoring core writes (members' top parts, flagged
    members only, combined on the severity scale) still ranks the planted feature
    first."""
    weights = {"robust_zscore": 0.4, "isolation_forest": 0.3, "lof": 0.3}
    members = [
        Member(m, SimpleNamespace(version="v1"), w, bundles[m].threshold, _no_spark, bundles[m])  # type: ignore[arg-type]
        for m, w in weights.items()
    ]
    cfg = make_cfg(
        "transactions", "scoring.alert_severity=95", f"scoring.ensemble={ensemble}",
        "scoring.top_features=2",
    )  # fmt: skip
    got = score_pandas(pd.DataFrame(TEST, columns=FEATURES), members, cfg)
    alerted = np.flatnonzero(got.is_alert[:N_PLANTED])
    assert len(alerted) >= 20
    explained = [i for i in alerted if got.explanation[i]]
    assert len(explained) >= 0.9 * len(alerted)
    top = np.array([FEATURES.index(got.explanation[i][0][0]) for i in explained])
    assert np.mean(top == PLANTED[explained]) >= 0.9
    # Clean rows that do not alert carry no explanation.
    assert all(got.explanation[i] == [] for i in np.flatnonzero(~got.is_alert))


def _no_spark(df: DataFrame) -> tuple[DataFrame, Column]:
    raise AssertionError("score_pandas does not attach Spark columns")
