"""Detection quality on the real labelled data in ../shared/data (marked quality)."""

from __future__ import annotations

import numpy as np
import pytest

from lakehound.quality import adbench, nab
from lakehound.quality.report import ENSEMBLE, SHUTTLE_ROWS, tabular_detectors, tabular_ensembles
from tests.conftest import require_shared

pytestmark = pytest.mark.quality


@pytest.fixture(scope="module")
def adbench_results() -> dict[tuple[str, str], adbench.Result]:
    require_shared(adbench.DATA_DIR)
    ensembles, weights = tabular_ensembles()
    res = adbench.run(
        tabular_detectors(),
        ensembles=ensembles,
        weights=weights,
        max_rows={"shuttle": SHUTTLE_ROWS},
    )
    return {(r.dataset, r.detector): r for r in res}


@pytest.mark.parametrize("dataset", ["cardio", "thyroid", "shuttle"])
def test_isolation_forest_matches_published_roc_auc(
    adbench_results: dict[tuple[str, str], adbench.Result], dataset: str
) -> None:
    got = adbench_results[(dataset, "isolation_forest")].roc_auc
    published = adbench.PUBLISHED_ROC["isolation_forest"][dataset]
    assert abs(got - published) <= 2.0, (dataset, got, published)


@pytest.mark.parametrize("detector", ["pca", "lof"])
@pytest.mark.parametrize("dataset", ["cardio", "thyroid", "shuttle"])
def test_pca_and_lof_match_published_roc_auc(
    adbench_results: dict[tuple[str, str], adbench.Result], detector: str, dataset: str
) -> None:
    # Measured: PCA 95.4 / 96.8 / 99.1, LOF 65.4 / 88.5 / 56.2 (before the fix PCA
    # scored 86.4 / 60.3 / 52.6 and LOF 55.6 / 74.6 / 55.6).
    got = adbench_results[(dataset, detector)].roc_auc
    published = adbench.PUBLISHED_ROC[detector][dataset]
    assert abs(got - published) <= 3.0, (detector, dataset, got, published)


def test_every_tabular_detector_beats_chance(
    adbench_results: dict[tuple[str, str], adbench.Result],
) -> None:
    for (ds, det), r in adbench_results.items():
        assert r.roc_auc > 50.0, (ds, det, r.roc_auc)


def test_ensemble_at_least_as_good_as_its_best_member(
    adbench_results: dict[tuple[str, str], adbench.Result],
) -> None:
    datasets = ["cardio", "thyroid", "shuttle"]

    def mean(det: str, metric: str) -> float:
        return float(np.mean([getattr(adbench_results[(d, det)], metric) for d in datasets]))

    for metric in ("roc_auc", "pr_auc"):
        best = max(mean(m, metric) for m in ENSEMBLE)
        assert mean("ensemble", metric) >= best, (metric, mean("ensemble", metric), best)
    # And on no dataset more than half a ROC point or 2 PR points below its best
    # member (measured: at most 0.2 ROC and 1.2 PR points below, on thyroid).
    for d in datasets:
        best = max(adbench_results[(d, m)].roc_auc for m in ENSEMBLE)
        assert adbench_results[(d, "ensemble")].roc_auc >= best - 0.5
        best_pr = max(adbench_results[(d, m)].pr_auc for m in ENSEMBLE)
        assert adbench_results[(d, "ensemble")].pr_auc >= best_pr - 2.0, (d, best_pr)


def test_nab_series_detectors_beat_the_null_detector() -> None:
    require_shared(nab.DATA_DIR)
    res = nab.run({"ewma": {}, "forecast_quantile": {}, "robust_zscore": {}, "lstm_quantile": {}})
    for det, profiles in res.items():
        # Measured: 23-27 standard (lstm_quantile 37.6, ~20 s of the runtime); the
        # published "Random" detector scores 11.0.
        assert profiles["standard"]["score"] > 15.0, (det, profiles)
        assert profiles["low_fn"]["score"] >= profiles["standard"]["score"] - 5.0


def test_nab_likelihood_stage_lifts_the_series_detectors() -> None:
    require_shared(nab.DATA_DIR)
    # Measured on the 35 shared series (standard / low FN): robust z 51.2 / 55.4,
    # forecast quantile 50.3 / 53.5, Holt-Winters 47.0 / 53.7; without the stage
    # (raw scores, --raw) 9.2, 12.6 and 2.5 standard. NAB's published windowed
    # Gaussian scores 39.6 on the full corpus, the random detector 16.8.
    res = nab.run({"robust_zscore": {}, "forecast_quantile": {}, "holt_winters": {}})
    floors = {"robust_zscore": 48.0, "forecast_quantile": 47.0, "holt_winters": 44.0}
    for det, floor in floors.items():
        assert res[det]["standard"]["score"] >= floor, (det, res[det])
        assert res[det]["low_fn"]["score"] >= res[det]["standard"]["score"]
    raw = nab.run({"holt_winters": {}}, likelihood=False)
    assert raw["holt_winters"]["standard"]["score"] < 10.0  # what the stage fixes


def test_nab_cad_ose_and_the_series_ensemble_reach_the_target() -> None:
    # Measured on the 35 shared series (standard / low FP / low FN): cad_ose 58.9 /
    # 49.0 / 64.7, the ensemble (cad_ose 4 + robust z 1) 60.9 / 50.5 / 66.7; the
    # issue's target is 60 standard. About 90 s, nearly all of it cad_ose.
    members = {name: nab.DETECTORS[name] for name in nab.ENSEMBLE}
    res = nab.run(members, ensembles={"ensemble": nab.ENSEMBLE})
    assert res["cad_ose"]["standard"]["score"] >= 56.0, res["cad_ose"]
    assert res["ensemble"]["standard"]["score"] >= 60.0, res["ensemble"]
    best_member = max(res[m]["standard"]["score"] for m in nab.ENSEMBLE)
    assert res["ensemble"]["standard"]["score"] > best_member
    for name in ("cad_ose", "ensemble"):
        assert res[name]["low_fn"]["score"] >= res[name]["standard"]["score"]
