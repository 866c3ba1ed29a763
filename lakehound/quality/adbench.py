"""ADBench protocol for tabular detectors: 70/30 stratified split, fit on 70%, score 30%.

Unsupervised as in ADBench: the training split keeps its anomalies and labels are
only used to measure. ROC-AUC and PR-AUC (average precision) are averaged over
the seeds. The ensemble member scores are calibrated exactly as in the pipeline
(empirical CDF of each member's training scores -> severity 0-100, then mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split

from udfs.calibration import Calibrator
from udfs.detectors.registry import create

DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "tabular"
DATASETS = {"cardio": "6_cardio.npz", "thyroid": "38_thyroid.npz", "shuttle": "32_shuttle.npz"}

# Published ADBench ROC-AUC x100 (../shared/data/README.md), for comparison.
PUBLISHED_ROC = {
    "isolation_forest": {"cardio": 93.2, "thyroid": 98.3, "shuttle": 99.6},
    "lof": {"cardio": 66.3, "thyroid": 86.9, "shuttle": 57.1},
    "ocsvm": {"cardio": 93.9, "thyroid": 87.9, "shuttle": 97.4},
    "pca": {"cardio": 95.6, "thyroid": 96.3, "shuttle": 98.6},
}


@dataclass(frozen=True)
class Result:
    dataset: str
    detector: str
    roc_auc: float  # x100, mean over seeds
    pr_auc: float
    seeds: int
    rows: int


def load(
    dataset: str, max_rows: int | None = None, data_dir: Path = DATA_DIR
) -> tuple[np.ndarray, np.ndarray]:
    """X, y of an ADBench file; ``max_rows`` takes a stratified subsample (seed 0)."""
    with np.load(data_dir / DATASETS[dataset], allow_pickle=False) as f:
        X, y = np.asarray(f["X"], dtype=np.float64), np.asarray(f["y"], dtype=int)
    if max_rows is not None and len(y) > max_rows:
        X, _, y, _ = train_test_split(X, y, train_size=max_rows, stratify=y, random_state=0)
    return X, y


def _split_scores(
    X: np.ndarray, y: np.ndarray, seed: int, members: dict[str, dict[str, Any]]
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    Xtr, Xte, _, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    test: dict[str, np.ndarray] = {}
    train: dict[str, np.ndarray] = {}
    for name, params in members.items():
        p = dict(params)
        if "random_state" in create(name).get_params():
            p.setdefault("random_state", seed)
        det = create(name, **p).fit(Xtr)
        train[name], test[name] = det.score(Xtr), det.score(Xte)
    return yte, train, test


def ensemble_severity(
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    members: list[str],
    weights: list[float] | None = None,
) -> np.ndarray:
    """(Weighted) mean calibrated severity of ``members``: jobs/score.py's mean/weighted ensemble."""
    sev = [Calibrator().fit(train[m]).severity(test[m]) for m in members]
    return np.average(sev, axis=0, weights=weights)


def run(
    detectors: dict[str, dict[str, Any]],
    datasets: list[str] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    ensembles: dict[str, list[str]] | None = None,
    max_rows: dict[str, int] | None = None,
    weights: dict[str, list[float]] | None = None,
) -> list[Result]:
    """ROC-AUC / PR-AUC (x100, mean of ``seeds``) per dataset and detector (and ensemble)."""
    out: list[Result] = []
    for ds in datasets or list(DATASETS):
        X, y = load(ds, (max_rows or {}).get(ds))
        acc: dict[str, list[tuple[float, float]]] = {}
        for seed in seeds:
            yte, train, test = _split_scores(X, y, seed, detectors)
            scores = dict(test)
            for ens, members in (ensembles or {}).items():
                scores[ens] = ensemble_severity(train, test, members, (weights or {}).get(ens))
            for name, s in scores.items():
                acc.setdefault(name, []).append(
                    (100 * roc_auc_score(yte, s), 100 * average_precision_score(yte, s))
                )
        for name, vals in acc.items():
            roc, pr = np.mean(vals, axis=0)
            out.append(Result(ds, name, float(roc), float(pr), len(seeds), len(y)))
    return out
