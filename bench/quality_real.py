"""Quality on the real BGL log and card transactions, for the quality benchmark.

Three measurements, each calling the project's own functions (nothing reimplemented):

* BGL templates: loghub's grouping and parsing accuracy of
  :mod:`lakehound.features.logs` on BGL_2k, computed as
  ``tests/features/test_logs.py::test_template_accuracy_on_loghub_bgl_2k`` does.
* BGL alerts: the real batch pipeline (``jobs.pipeline.run``, ``conf/bgl.yaml``)
  on BGL_2k, its ``alerts`` table scored against a ground truth built here from the
  raw lines alone: a (component, 5-minute window) feature row is anomalous when
  any of its lines carries an alert label (first token not ``-``).
* Card transactions: the Fraud Detection Handbook protocol of
  ``tests/lifecycle/test_quality_cardtx.py`` for LakeHound's unsupervised
  ``isolation_forest`` and ``supervised`` member, plus PyOD's IForest and ECOD
  fitted on the same training week.

A part whose data is absent is replaced by a reason string.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import spark_overrides

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BGL_DIR = SHARED / "logs" / "BGL"
CARDTX = SHARED / "transactions" / "fraud_sim_2018-04_2018-05.parquet"

# Drain's grouping accuracy on BGL_2k in the loghub benchmark (Zhu et al., ICSE-SEIP 2019).
DRAIN_BGL_GA = 0.963
# The window of the bgl features (lakehound.features.registry.LOG_WINDOW, "5 minutes"):
# the ground truth below is built without the feature code, so it names it once.
BGL_WINDOW_S = 300
# Published on the same simulator and protocol (README "Model lifecycle", data README):
# ROC-AUC, average precision, card precision@100.
PUBLISHED_CARDTX: dict[str, tuple[float, float, float]] = {
    "Isolation Forest (unsupervised)": (0.808, 0.164, 0.190),
    "autoencoder (unsupervised)": (0.836, 0.180, 0.217),
    "random forest (supervised)": (0.867, 0.658, 0.287),
}
CARDTX_TRAIN_START = dt.date(2018, 5, 11)


# ---------------------------------------------------------------------------
# Pure Python: the BGL ground truth and the alert metrics
# ---------------------------------------------------------------------------


def bgl_window_truth(
    lines: Iterable[str], window_s: int = BGL_WINDOW_S
) -> dict[tuple[str, int], bool]:
    """(component, window end in epoch seconds) -> whether any line in it is an alert.

    From loghub's BGL layout alone: ``Label Timestamp Date Node Time NodeRepeat Type
    Component Level Content``; windows are epoch-aligned tumbling windows, a window
    named by its end (as feature rows are stamped). Lines without an epoch field
    are left out (they carry no time, so no window).
    """
    truth: dict[tuple[str, int], bool] = {}
    for line in lines:
        parts = line.split(" ", 9)
        if len(parts) < 9 or not parts[1].isdigit():
            continue
        epoch = int(parts[1])
        key = (parts[7], epoch // window_s * window_s + window_s)
        truth[key] = truth.get(key, False) or parts[0] != "-"
    return truth


def alert_precision_recall(
    rows: Iterable[tuple[str, str, int]],
    alert_ids: Iterable[str],
    truth: dict[tuple[str, int], bool],
) -> dict[str, Any]:
    """Precision and recall of alerts over feature rows.

    ``rows`` are the feature rows as ``(event_id, entity_id, window end epoch s)``;
    a row is anomalous if ``truth`` says so (a row with no line, e.g. an empty
    window after a silence, is normal). Alerts are event ids of ``rows``.
    """
    anomalous: dict[str, bool] = {}
    keys: set[tuple[str, int]] = set()
    for event_id, entity_id, end in rows:
        keys.add((entity_id, end))
        anomalous[event_id] = truth.get((entity_id, end), False)
    alerts = set(alert_ids)
    unknown = alerts - anomalous.keys()
    if unknown:
        raise ValueError(
            f"alerts name {len(unknown)} event ids not in the features: {sorted(unknown)[:3]}"
        )
    n_anom = sum(anomalous.values())
    tp = sum(anomalous[a] for a in alerts)
    return {
        "windows": len(anomalous),
        # Rows with at least one line; the others are empty windows after a silence.
        "active_windows": sum(1 for k in keys if k in truth),
        "anomalous_windows": n_anom,
        "alerts": len(alerts),
        "true_alerts": tp,
        "precision": tp / len(alerts) if alerts else 0.0,
        "recall": tp / n_anom if n_anom else 0.0,
        # Anomalous (component, window) pairs with no feature row: should be 0.
        "anomalous_windows_without_row": sum(1 for k, v in truth.items() if v and k not in keys),
    }


# ---------------------------------------------------------------------------
# Spark parts
# ---------------------------------------------------------------------------


def _session(workdir: Path, partitions: int = 2) -> Any:
    from lakehound.config import load_config
    from lakehound.session import build_session

    overrides = [*spark_overrides("local[2]", partitions), f"spark.warehouse_dir={workdir / 'wh'}"]
    cfg = load_config(ROOT / "conf" / "bgl.yaml", overrides)
    return build_session(cfg.spark, app_name="lakehound-bench-quality")


def bgl_templates(spark: Any) -> dict[str, Any] | str:
    """Grouping and parsing accuracy on BGL_2k against loghub's reference parse."""
    from lakehound.quality import bgl

    if not ((BGL_DIR / bgl.LOG).exists() and (BGL_DIR / bgl.STRUCTURED).exists()):
        return f"BGL data absent ({BGL_DIR / bgl.LOG}, {bgl.STRUCTURED}): skipped"
    return {
        **bgl.template_accuracy(spark, BGL_DIR),
        "drain_published_grouping_accuracy": DRAIN_BGL_GA,
    }


def bgl_alerts(spark: Any, lakehouse: Path, partitions: int = 2) -> dict[str, Any] | str:
    """The batch pipeline on BGL_2k; precision / recall of ``alerts`` per feature row."""
    from pyspark.sql import functions as F

    from jobs import pipeline
    from lakehound import io
    from lakehound.cli import RunContext
    from lakehound.config import load_config

    log = BGL_DIR / "BGL_2k.log"
    if not log.exists():
        return f"BGL data absent ({log}): skipped"
    cfg = load_config(
        ROOT / "conf" / "bgl.yaml",
        [
            f"lakehouse={lakehouse}",
            f"input.path={log}",
            "validation.data_docs=false",
            *spark_overrides("local[2]", partitions),
        ],
    )
    summary = pipeline.run(spark, cfg, RunContext(job="pipeline", date=None))
    rows = [
        (r[0], r[1], int(r[2]))
        for r in io.read_table(spark, cfg, "features")
        .select("event_id", "entity_id", F.unix_seconds("event_ts"))
        .collect()
    ]
    alert_ids = [r[0] for r in io.read_table(spark, cfg, "alerts").select("event_id").collect()]
    raw = log.read_text(encoding="utf-8").splitlines()
    out = alert_precision_recall(rows, alert_ids, bgl_window_truth(raw))
    out["lines"] = len(raw)
    out["alert_lines"] = sum(1 for ln in raw if ln.split(" ", 1)[0] != "-")
    out["detectors"] = [d.name for d in cfg.scoring.detectors]
    out["alert_severity"] = cfg.scoring.alert_severity
    out["pipeline_summary"] = summary
    return out


def cardtx(spark: Any) -> dict[str, Any] | str:
    """Handbook protocol on the real card data: LakeHound's members and PyOD peers."""
    from lakehound.lifecycle import handbook, supervised
    from udfs.bundle import ModelBundle
    from udfs.calibration import Threshold

    if not CARDTX.exists():
        return f"card transactions absent ({CARDTX}): skipped"
    train, test, feats = handbook.load_split(spark, CARDTX, CARDTX_TRAIN_START)
    Xtr, Xte = train[feats].to_numpy(np.float64), test[feats].to_numpy(np.float64)
    threshold = Threshold("contamination", 0.01)
    results: dict[str, dict[str, float]] = {}
    iforest = ModelBundle.fit(
        "isolation_forest", {"n_estimators": 100, "max_samples": 256, "random_state": 0},
        feats, Xtr, threshold,
    )  # fmt: skip
    results["LakeHound isolation_forest (unsupervised)"] = handbook.scores(
        test, iforest.score(Xte).raw
    )
    sup = supervised.fit_bundle(feats, Xtr, train["y"].to_numpy(), {}, threshold)
    results["LakeHound supervised (training-week labels as feedback)"] = handbook.scores(
        test, sup.score(Xte).raw
    )
    note = "pyod not installed: peer rows skipped"
    try:
        from pyod.models.ecod import ECOD
        from pyod.models.iforest import IForest
    except ImportError:
        pass
    else:
        # PyOD refuses NaN: the same training medians LakeHound's bundle fills with.
        ftr, fte = (np.where(np.isfinite(X), X, iforest.fill_values) for X in (Xtr, Xte))
        for name, model in [("PyOD IForest", IForest(random_state=0)), ("PyOD ECOD", ECOD())]:
            s = model.fit(ftr).decision_function(fte)
            results[f"{name} (unsupervised)"] = handbook.scores(test, s)
        note = ""
        lh, peer = (
            results["LakeHound isolation_forest (unsupervised)"],
            results["PyOD IForest (unsupervised)"],
        )
        if all(np.isclose(lh[k], peer[k]) for k in lh):
            note = (
                "PyOD's IForest wraps the same scikit-learn IsolationForest (100 trees, "
                "256 samples, seed 0) as LakeHound's isolation_forest, hence equal figures."
            )
    return {
        "protocol": (
            f"train {CARDTX_TRAIN_START}..{CARDTX_TRAIN_START + dt.timedelta(days=6)}, "
            f"7 days delay, test {CARDTX_TRAIN_START + dt.timedelta(days=14)}.."
            f"{CARDTX_TRAIN_START + dt.timedelta(days=20)}, {len(feats)} handbook features"
        ),
        "train_rows": len(train),
        "test_rows": len(test),
        "test_frauds": int(test["y"].sum()),
        "results": results,
        "published": {k: list(v) for k, v in PUBLISHED_CARDTX.items()},
        **({"note": note} if note else {}),
    }


def run_real(smoke: bool) -> dict[str, Any]:
    """``bgl`` and ``cardtx`` entries of the quality result (skipped in a smoke run:
    they need a JVM, which the smoke does not start)."""
    if smoke:
        reason = "smoke run: skipped (needs a JVM; see python -m bench.run --only quality)"
        return {"bgl": reason, "cardtx": reason}
    with tempfile.TemporaryDirectory(prefix="lakehound-bench-quality-") as tmp:
        spark = _session(Path(tmp))
        try:
            templates = bgl_templates(spark)
            alerts = bgl_alerts(spark, Path(tmp) / "lakehouse")
            bgl: dict[str, Any] | str = (
                templates
                if isinstance(templates, str) and isinstance(alerts, str)
                else {"templates": templates, "alerts": alerts}
            )
            return {"bgl": bgl, "cardtx": cardtx(spark)}
        finally:
            spark.stop()
