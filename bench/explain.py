"""Explanation cost: per 1,000 alerts, and scoring throughput with explanations on vs off.

    python -m bench.explain [--rows 50000] [--features 8] [--detectors isolation_forest,lof]

Synthetic rows (``--features`` Gaussian columns, one correlated pair) with 1% of
them moved 6-8 standard deviations in one feature; each detector is fitted on
separate clean rows with a 1% contamination threshold. For each detector, in this
process (no Spark: the pandas UDF runs exactly ``ModelBundle.score_arrays`` per
Arrow batch):

* ``explain_s_per_1k``: ``ModelBundle.explain`` on the alerted rows, scaled to 1,000;
* ``rows_s_off`` / ``rows_s_on``: ``score_arrays`` over the rows in batches of
  10,000 (the project's Arrow batch size), ``top_k=0`` (no explanation) vs
  ``top_k=3`` (explanations of the flagged rows); ``on_vs_off`` their ratio.

Each figure is the median of ``--reps`` runs. Prints a Markdown table and writes
``bench/explain.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from udfs.bundle import ModelBundle
from udfs.calibration import Threshold

DETECTORS = [
    "isolation_forest",
    "zscore",
    "robust_zscore",
    "pca",
    "lof",
    "gmm",
    "kmeans",
    "ocsvm",
    "autoencoder",
]
BATCH = 10_000


def _data(rows: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cov = np.eye(d)
    cov[0, 1] = cov[1, 0] = 0.6
    train = rng.multivariate_normal(np.zeros(d), cov, size=20_000)
    X = rng.multivariate_normal(np.zeros(d), cov, size=rows)
    hit = rng.choice(rows, rows // 100, replace=False)
    X[hit, rng.integers(0, d, len(hit))] += rng.choice([-1.0, 1.0], len(hit)) * rng.uniform(
        6.0, 8.0, len(hit)
    )
    return train, X


def _time(fn: Any, reps: int) -> float:
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return float(statistics.median(out))


def measure(name: str, train: np.ndarray, X: np.ndarray, reps: int) -> dict[str, Any]:
    features = [f"f{j}" for j in range(X.shape[1])]
    bundle = ModelBundle.fit(name, {}, features, train, Threshold("contamination", 0.01))
    flagged = np.flatnonzero(bundle.score(X, top_k=0).is_anomaly)
    # Warm-up: the TreeSHAP explainer is built once per worker, not per batch.
    bundle.explain(X, flagged[:5])
    t_explain = _time(lambda: bundle.explain(X, flagged), reps)

    def run(top_k: int) -> None:
        for start in range(0, len(X), BATCH):
            bundle.score_arrays(X[start : start + BATCH], top_k=top_k)

    off, on = _time(lambda: run(0), reps), _time(lambda: run(3), reps)
    return {
        "detector": name,
        "method": bundle.explain(X, flagged[:1]).method,
        "alerts": len(flagged),
        "explain_s_per_1k": t_explain / max(len(flagged), 1) * 1000.0,
        "rows_s_off": len(X) / off,
        "rows_s_on": len(X) / on,
        "on_vs_off": off / on,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=50_000)
    p.add_argument("--features", type=int, default=8)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--detectors", default=",".join(DETECTORS))
    p.add_argument("--out", default=str(Path(__file__).with_name("explain.json")))
    args = p.parse_args(argv)
    train, X = _data(args.rows, args.features)
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in args.detectors.split(","):
            results.append(measure(name, train, X, args.reps))
            r = results[-1]
            print(
                f"{name}: {r['method']}, {r['alerts']} alerts, "
                f"{r['explain_s_per_1k']:.2f} s / 1k alerts",
                flush=True,
            )
    print(f"\n{args.rows:,} rows x {args.features} features, 1% planted, median of {args.reps}\n")
    print("| detector | method | alerts | s per 1,000 alerts | rows/s off | rows/s on | on / off |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['detector']} | {r['method']} | {r['alerts']} | {r['explain_s_per_1k']:.2f} "
            f"| {r['rows_s_off']:,.0f} | {r['rows_s_on']:,.0f} | {r['on_vs_off']:.2f} |"
        )
    Path(args.out).write_text(
        json.dumps({"rows": args.rows, "features": args.features, "results": results}, indent=1)
        + "\n",
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
