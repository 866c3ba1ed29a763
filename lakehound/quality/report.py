"""Write the detection-quality report (ADBench + NAB) as JSON and markdown for bench/.

    python -m lakehound.quality.report --out bench/out

Takes about a minute on one core: every tabular detector under the ADBench
protocol (shuttle subsampled to 10,000 stratified rows, see SHUTTLE_ROWS) plus the
pipeline's ensemble, and the series detectors on the NAB corpus.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lakehound.quality import adbench, nab
from udfs.detectors.registry import available, get

# Shuttle has 49,097 rows; LOF, DBSCAN and the autoencoder on 34k training rows x 3
# seeds would take minutes. A stratified 10,000-row sample keeps the 7.2% rate.
SHUTTLE_ROWS = 10_000
# The ensemble evaluated (and recommended in conf): Isolation Forest (joint
# structure) + robust z-score (single-feature extremes, which IF saturates on),
# severities weighted 2:1. Kept after the PCA fix because no other weighted mean
# of severities measured did better in the worst case: over every mix of IF, PCA,
# robust z and z (weights 0-3) on cardio / thyroid / shuttle, this one has the
# smallest largest loss to its best member (0.2 ROC, 1.2 PR points); adding PCA
# (equal weights) costs 12.7 PR points on thyroid, where PCA's PR-AUC is 45 against
# IF's 71. On the card data IF+PCA has AP 0.297, this one 0.289 (IF alone 0.299).
ENSEMBLE = {"isolation_forest": 2.0, "robust_zscore": 1.0}
# Other mixes reported next to it (same splits), so the choice can be re-checked.
ENSEMBLE_ALTERNATIVES: dict[str, dict[str, float]] = {
    "ensemble_if_pca": {"isolation_forest": 1.0, "pca": 1.0},
    "ensemble_if_pca_rz": {"isolation_forest": 1.0, "pca": 1.0, "robust_zscore": 1.0},
}


def tabular_ensembles() -> tuple[dict[str, list[str]], dict[str, list[float]]]:
    """Members and weights of the pipeline's ensemble and the alternatives, for adbench.run."""
    mixes = {"ensemble": ENSEMBLE, **ENSEMBLE_ALTERNATIVES}
    return {k: list(v) for k, v in mixes.items()}, {k: list(v.values()) for k, v in mixes.items()}


NAB_DETECTORS: dict[str, dict[str, Any]] = nab.DETECTORS


def tabular_detectors() -> dict[str, dict[str, Any]]:
    """Detectors of feature rows: not the series ones, not the log-session ones (whose
    ``input_kind`` is key counts or key sequences)."""
    return {
        n: {}
        for n in available()
        if not get(n).sequential and getattr(get(n), "input_kind", None) is None
    }


def build(nab_detectors: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    ensembles, weights = tabular_ensembles()
    res = adbench.run(
        tabular_detectors(),
        ensembles=ensembles,
        weights=weights,
        max_rows={"shuttle": SHUTTLE_ROWS},
    )
    rows = [r.__dict__ for r in res]
    by_det: dict[str, list[float]] = {}
    for r in res:
        by_det.setdefault(r.detector, []).append(r.roc_auc)
    return {
        "adbench": {
            "protocol": "70/30 stratified split, fit on 70% (unlabelled), score 30%, "
            "default params, mean of seeds 0,1,2; shuttle subsampled to "
            f"{SHUTTLE_ROWS} stratified rows",
            "results": rows,
            "mean_roc_auc": {k: float(np.mean(v)) for k, v in by_det.items()},
            "published_roc_auc": adbench.PUBLISHED_ROC,
            "ensemble": {"members": ENSEMBLE, "combine": "weighted mean of severities"},
            "ensemble_alternatives": ENSEMBLE_ALTERNATIVES,
        },
        "nab": {
            "protocol": "per series: fit on the probation rows (at least the detector's "
            "minimum), score the whole series, raw scores through the anomaly-likelihood "
            "and suppression stage (cad_ose as it is); NAB v1.1 rules; threshold "
            "optimised exactly (every distinct score) per detector and profile over the "
            "corpus; corpus = ../shared/data/nab (35 series, not the 58 of the published "
            "scoreboard)",
            "results": nab.run(
                nab_detectors or NAB_DETECTORS,
                ensembles=None if nab_detectors else {"ensemble": nab.ENSEMBLE},
            ),
        },
    }


def to_markdown(report: dict[str, Any]) -> str:
    lines = ["## Detection quality", "", "### ADBench (ROC-AUC / PR-AUC x100)", ""]
    res = report["adbench"]["results"]
    datasets = sorted({r["dataset"] for r in res})
    lines += [
        "| detector | " + " | ".join(datasets) + " | mean ROC | ADBench published ROC |",
        "|---" * (len(datasets) + 3) + "|",
    ]
    means = report["adbench"]["mean_roc_auc"]
    published = report["adbench"]["published_roc_auc"]
    for det in sorted(means, key=lambda d: -means[d]):
        cells = []
        for ds in datasets:
            r = next(x for x in res if x["dataset"] == ds and x["detector"] == det)
            cells.append(f"{r['roc_auc']:.1f} / {r['pr_auc']:.1f}")
        pub = (
            " / ".join(f"{published[det][ds]:.1f}" for ds in datasets) if det in published else "-"
        )
        lines.append(f"| {det} | " + " | ".join(cells) + f" | {means[det]:.1f} | {pub} |")
    lines += ["", report["adbench"]["protocol"], "", "### NAB (normalised score)", ""]
    lines += ["| detector | standard | low FP | low FN |", "|---|---|---|---|"]
    for det, prof in report["nab"]["results"].items():
        lines.append(
            f"| {det} | {prof['standard']['score']:.1f} | {prof['low_fp']['score']:.1f} | "
            f"{prof['low_fn']['score']:.1f} |"
        )
    lines += ["", report["nab"]["protocol"], ""]
    return "\n".join(lines)


def write_report(out_dir: Path | str) -> dict[str, Any]:
    """Compute the report and write ``quality.json`` and ``quality.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = build()
    (out / "quality.json").write_text(json.dumps(report, indent=2, default=float))
    (out / "quality.md").write_text(to_markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="bench/out")
    args = p.parse_args(argv)
    write_report(args.out)
    print(f"wrote {args.out}/quality.json and quality.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
