"""Quality benchmark: the detectors helper's ADBench / NAB report, plus PyOD peers.

LakeHound's numbers come from :mod:`lakehound.quality.report` (owned by the detector
work; called, not reimplemented). PyOD's IForest, ECOD, PCA and LOF run here on the same
ADBench splits (70/30 stratified, seeds 0-2, same shuttle subsample, min-max scaled as
ADBench does), and PCA and LOF too, as peers; PyOD
is an optional dev dependency, imported lazily, and its rows are skipped if absent.
The real BGL log and card transactions (``bgl``, ``cardtx``) come from
:mod:`bench.quality_real`; they need a JVM, so a smoke run skips them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split

from bench.common import emit, worker_args
from bench.quality_real import run_real


def pyod_peers(
    datasets: list[str], seeds: tuple[int, ...], max_rows: dict[str, int]
) -> list[dict[str, Any]] | None:
    try:
        from pyod.models.ecod import ECOD
        from pyod.models.iforest import IForest
        from pyod.models.lof import LOF
        from pyod.models.pca import PCA
    except ImportError:
        return None
    from sklearn.preprocessing import MinMaxScaler

    from lakehound.quality import adbench

    out = []
    for ds in datasets:
        X, y = adbench.load(ds, max_rows.get(ds))
        acc: dict[str, list[tuple[float, float]]] = {}
        for seed in seeds:
            Xtr, Xte, _, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
            # ADBench min-max scales on the training split before every detector (the
            # forest and ECOD are unaffected; LOF's neighbourhoods are).
            mm = MinMaxScaler().fit(Xtr)
            Xtr, Xte = mm.transform(Xtr), mm.transform(Xte)
            for name, make in {
                "pyod_iforest": lambda s: IForest(random_state=s),
                "pyod_ecod": lambda s: ECOD(),
                "pyod_pca": lambda s: PCA(random_state=s),
                "pyod_lof": lambda s: LOF(),
            }.items():
                s = make(seed).fit(Xtr).decision_function(Xte)
                if not np.isfinite(s).all():
                    # PyOD's PCA divides by each axis' variance ratio: an exactly
                    # collinear feature (cardio) gives a 0 ratio and infinite scores.
                    continue
                acc.setdefault(name, []).append(
                    (100 * roc_auc_score(yte, s), 100 * average_precision_score(yte, s))
                )
        for name, vals in acc.items():
            roc, pr = np.mean(vals, axis=0)
            out.append(
                {"dataset": ds, "detector": name, "roc_auc": float(roc), "pr_auc": float(pr),
                 "seeds": len(vals), "rows": len(y)}
            )  # fmt: skip
    return out


def run(params: dict[str, Any]) -> dict[str, Any]:
    from lakehound.quality import adbench, report

    smoke = bool(params.get("smoke"))
    seeds: tuple[int, ...]
    shuttle = getattr(report, "SHUTTLE_ROWS", None)
    max_rows = {"shuttle": shuttle} if shuttle else {}
    if smoke:
        datasets, seeds = ["thyroid"], (0,)
        res = adbench.run({"isolation_forest": {}}, datasets=datasets, seeds=seeds)
        out: dict[str, Any] = {
            "adbench": {
                "protocol": "smoke: thyroid, seed 0, isolation_forest only",
                "results": [r.__dict__ for r in res],
                "published_roc_auc": adbench.PUBLISHED_ROC,
            }
        }
    else:
        datasets, seeds = list(adbench.DATASETS), (0, 1, 2)
        out = report.build()
        out["markdown"] = report.to_markdown(out)
    peers = pyod_peers(datasets, seeds, max_rows)
    out["pyod"] = peers if peers is not None else "pyod not installed: peer rows skipped"
    out.update(run_real(smoke))
    return out


if __name__ == "__main__":
    emit(run(worker_args()))
