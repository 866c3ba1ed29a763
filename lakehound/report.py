"""Write one self-contained HTML report per batch run next to the dataset's tables.

The report (``<lakehouse>/<dataset>/_reports/run-<first>_<last>.html``) holds the run's
volumes (in / validated / quarantined), alerts per detector, the top anomalies with
their explanations (a bar per feature: its part of the severity, in points, by the
named attribution method), a global feature importance chart per detector and for
the ensemble (mean |part| over its alerts), a chart of ensemble severity over time with the alerts
marked, and PR / ROC curves when a ``labels`` table exists. Charts are inline SVG written here (no
plotting library): the file opens anywhere, offline, with no assets.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehound import io
from lakehound.config import Config

TOP_N = 20
# Features per global importance chart.
TOP_FEATURES = 10
# Severity points drawn per chart: enough to see the series, small enough for a browser.
MAX_POINTS = 4000


def report_path(cfg: Config, dates: Sequence[dt.date]) -> Path:
    first, last = min(dates).isoformat(), max(dates).isoformat()
    return Path(io.table_path(cfg, "_reports")) / f"run-{first}_{last}.html"


def _svg_line(
    series: list[tuple[str, np.ndarray, np.ndarray]], xlabel: str, ylabel: str, diagonal: bool
) -> str:
    """A unit-square line chart (x, y in [0, 1]) such as a PR or ROC curve."""
    w, h, pad = 320, 260, 40
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">',
        f'<rect x="{pad}" y="10" width="{w - pad - 10}" height="{h - pad - 10}" fill="none" stroke="#999"/>',
        f'<text x="{w // 2}" y="{h - 8}" font-size="11" text-anchor="middle">{xlabel}</text>',
        f'<text x="12" y="{h // 2}" font-size="11" transform="rotate(-90 12 {h // 2})" text-anchor="middle">{ylabel}</text>',
    ]

    def px(x: float, y: float) -> str:
        return f"{pad + x * (w - pad - 10):.1f},{10 + (1 - y) * (h - pad - 10):.1f}"

    if diagonal:
        parts.append(
            f'<line x1="{pad}" y1="{h - pad}" x2="{w - 10}" y2="10" stroke="#ccc" stroke-dasharray="4"/>'
        )
    for i, (name, xs, ys) in enumerate(series):
        step = max(1, len(xs) // 500)
        pts = " ".join(px(float(x), float(y)) for x, y in zip(xs[::step], ys[::step], strict=True))
        color = colors[i % len(colors)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>')
        parts.append(
            f'<text x="{pad + 8}" y="{26 + 14 * i}" font-size="11" fill="{color}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _svg_timeline(ts: np.ndarray, sev: np.ndarray, alert: np.ndarray) -> str:
    """Ensemble severity of every event over time; alerts in red on top."""
    w, h, pad = 900, 240, 40
    if len(ts) == 0:
        return "<p>No scored events.</p>"
    t0, t1 = float(ts.min()), float(ts.max())
    span = (t1 - t0) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">',
        f'<rect x="{pad}" y="10" width="{w - pad - 10}" height="{h - pad - 10}" fill="none" stroke="#999"/>',
        f'<text x="{w // 2}" y="{h - 8}" font-size="11" text-anchor="middle">event time</text>',
        f'<text x="12" y="{h // 2}" font-size="11" transform="rotate(-90 12 {h // 2})" text-anchor="middle">severity</text>',
    ]
    for is_alert, color, r in ((False, "#1f77b4", 1.2), (True, "#d62728", 2.5)):
        mask = alert == is_alert
        for t, s in zip(ts[mask], sev[mask], strict=True):
            x = pad + (float(t) - t0) / span * (w - pad - 10)
            y = 10 + (1 - float(s) / 100.0) * (h - pad - 10)
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{color}" fill-opacity="0.6"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _explain(expl: Any) -> str:
    if not expl:
        return ""
    return "; ".join(
        f"{e['feature']}={e['value']:.3g} ({e['contribution']:+.2f})" for e in expl[:3]
    )


def _method(expl: Any) -> str:
    """The attribution method named by an explanation (tables written before it had
    one: empty)."""
    return _method_names(e.asDict().get("method") for e in expl or [])


def _method_names(methods: Iterable[str | None]) -> str:
    """Distinct method names, sorted: an ensemble's combined entries name several
    (``kernel_shap+max_z_shapley``), listed one by one."""
    return ", ".join(sorted({m for ms in methods if ms for m in ms.split("+") if m}))


def _svg_bars(items: list[tuple[str, float]], unit: str, width: int = 420) -> str:
    """Horizontal bars, one per (label, value), from a zero axis: positive (towards
    anomalous) in red to the right, negative in blue to the left."""
    if not items:
        return ""
    row, label_w, pad = 18, 170, 48
    top = max(abs(v) for _, v in items) or 1.0
    neg = any(v < 0 for _, v in items)
    span = width - label_w - pad
    zero = label_w + (span / 2 if neg else 0)
    scale = (span / 2 if neg else span) / top
    h = row * len(items) + 6
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img">']
    for i, (label, v) in enumerate(items):
        y = 3 + i * row
        x, w = (zero, v * scale) if v >= 0 else (zero + v * scale, -v * scale)
        color = "#d62728" if v >= 0 else "#1f77b4"
        parts.append(
            f'<text x="{label_w - 4}" y="{y + 12}" font-size="11" text-anchor="end">'
            f"{html.escape(label)}</text>"
            f'<rect x="{x:.1f}" y="{y + 2}" width="{max(w, 0.5):.1f}" height="{row - 6}" '
            f'fill="{color}"><title>{html.escape(label)}: {v:+.3g} {unit}</title></rect>'
            f'<text x="{x + max(w, 0.5) + 3 if v >= 0 else x - 3:.1f}" y="{y + 12}" '
            f'font-size="10" text-anchor="{"start" if v >= 0 else "end"}">{v:+.2f}</text>'
        )
    parts.append(f'<line x1="{zero:.1f}" y1="0" x2="{zero:.1f}" y2="{h}" stroke="#555"/></svg>')
    return "".join(parts)


def _alert_bars(expl: Any) -> str:
    items = [(f"{e['feature']}={e['value']:.3g}", float(e["contribution"])) for e in expl or []]
    return _svg_bars([(k, v) for k, v in items if np.isfinite(v)], "severity points", 360)


def _importance(scores: Any) -> list[tuple[str, str, int, list[tuple[str, float]]]]:
    """Per detector, the ensemble first: (detector, methods, alerts explained, top
    features by mean |part| over those alerts, a feature outside an alert's top k
    counting as 0). The ensemble's parts are its members' combined on the severity
    scale (:func:`lakehound.scoring.core.score_wide`), so its chart is comparable to
    theirs; its combined entries name several methods (``a+b``), listed one by one."""
    flagged = scores.where(F.col("is_anomaly") & (F.size("explanation") > 0))
    counts = {
        r["detector"]: r["n"]
        for r in flagged.groupBy("detector").agg(F.count("*").alias("n")).collect()
    }
    entries = flagged.select("detector", F.explode("explanation").alias("e"))
    rows = (
        entries.groupBy("detector", F.col("e.feature").alias("feature"))
        .agg(F.sum(F.abs(F.col("e.contribution"))).alias("total"))
        .collect()
    )
    # Every method named in the detector's alerts (tables written before explanations
    # named one have none).
    has_method = "method" in scores.schema["explanation"].dataType.elementType.fieldNames()
    methods = (
        {
            r["detector"]: _method_names(r["methods"])
            for r in entries.groupBy("detector")
            .agg(F.collect_set("e.method").alias("methods"))
            .collect()
        }
        if has_method
        else {}
    )
    out = []
    for det in sorted(counts, key=lambda d: (d != "ensemble", d)):
        feats = sorted(
            (
                (r["feature"], float(r["total"] or 0.0) / counts[det])
                for r in rows
                if r["detector"] == det
            ),
            key=lambda kv: -kv[1],
        )[:TOP_FEATURES]
        out.append((det, methods.get(det, ""), counts[det], feats))
    return out


def curves(y: np.ndarray, score: np.ndarray) -> dict[str, Any]:
    """PR and ROC curve points and areas (scikit-learn) for binary labels y."""
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    prec, rec, _ = precision_recall_curve(y, score)
    fpr, tpr, _ = roc_curve(y, score)
    return {
        "precision": prec,
        "recall": rec,
        "fpr": fpr,
        "tpr": tpr,
        "pr_auc": float(average_precision_score(y, score)),
        "roc_auc": float(roc_auc_score(y, score)),
    }


def scored_dates(spark: SparkSession, cfg: Config) -> list[dt.date]:
    """Every event_date present in ``scores``, oldest first."""
    rows = io.read_table(spark, cfg, "scores").select(io.DATE_COL).distinct().collect()
    return sorted(r[0] for r in rows)


def write_report(
    spark: SparkSession, cfg: Config, dates: Sequence[dt.date], summary: dict[str, float]
) -> Path:
    """Render the run's report from the Delta tables; return its path."""
    in_dates = F.col(io.DATE_COL).isin(list(dates))
    scores = io.read_table(spark, cfg, "scores").where(in_dates)
    per_detector = (
        scores.groupBy("detector")
        .agg(F.count("*").alias("events"), F.sum(F.col("is_anomaly").cast("int")).alias("flagged"))
        .orderBy("detector")
        .collect()
    )
    alerts = io.read_table(spark, cfg, "alerts").where(in_dates)
    top = (
        alerts.orderBy(F.col("severity").desc(), "event_id")
        .limit(TOP_N)
        .select("event_id", "entity_id", "event_ts", "severity", "detectors", "explanation")
        .collect()
    )
    alert_ids = {r["event_id"] for r in alerts.select("event_id").collect()}
    ens = scores.where(F.col("detector") == "ensemble").select(
        "event_id", F.unix_timestamp("event_ts").alias("t"), "severity"
    )
    pdf = ens.orderBy("t").toPandas()
    sample = pdf.sample(n=MAX_POINTS, random_state=0) if len(pdf) > MAX_POINTS else pdf
    sample = (
        sample.merge(pdf[pdf.event_id.isin(alert_ids)], how="outer")
        if len(pdf) > MAX_POINTS
        else sample
    )
    timeline = _svg_timeline(
        sample["t"].to_numpy(dtype=float),
        sample["severity"].to_numpy(dtype=float),
        sample["event_id"].isin(alert_ids).to_numpy(),
    )

    sections = [
        "<h2>Volumes</h2>",
        _table(
            ["metric", "value"],
            [[k, f"{v:,.3f}" if v % 1 else f"{int(v):,}"] for k, v in summary.items()],
        ),
        "<h2>Alerts per detector</h2>",
        _table(
            ["detector", "events scored", "flagged"],
            [[r["detector"], r["events"], r["flagged"] or 0] for r in per_detector],
        ),
        f"<h2>Top {TOP_N} anomalies</h2>",
        "<p>Severity: 0-99 is the training percentile, 99-100 a fitted tail (99.5: a tail "
        "probability of 1%/e, 99.9: 1%/e<sup>9</sup>). Bars: each feature's part of the "
        "severity in points, by the named method (parts add up to the severity less the "
        "detector's base severity).</p>",
        _table(
            ["event", "entity", "time", "severity", "detectors", "explanation", "method"],
            [
                [
                    r["event_id"],
                    r["entity_id"],
                    r["event_ts"],
                    f"{r['severity']:.2f}",
                    ", ".join(r["detectors"] or []),
                    _explain(r["explanation"]),
                    _method(r["explanation"]),
                ]
                for r in top
            ],
        ),
        "<h3>Attributions of the top alerts</h3>",
        "".join(
            f"<figure class='bars'><figcaption>{html.escape(str(r['event_id']))} "
            f"severity {r['severity']:.2f}</figcaption>{_alert_bars(r['explanation'])}</figure>"
            for r in top
            if r["explanation"]
        ),
        "<h2>Global feature importance per detector (mean |part| over its alerts, "
        "severity points)</h2>",
        "".join(
            f"<figure class='bars'><figcaption>{html.escape(det)} ({html.escape(method)}, "
            f"{n:,} alerts)</figcaption>{_svg_bars(feats, 'severity points')}</figure>"
            for det, method, n, feats in _importance(scores)
        )
        or "<p>No explained alerts.</p>",
        "<h2>Ensemble severity over time (alerts in red)</h2>",
        timeline,
    ]
    event_labels = io.event_labels(spark, cfg)
    if event_labels is not None and len(pdf):
        labels = event_labels.select("event_id", F.col("is_anomaly").alias("label"))
        by_det = (
            scores.join(labels, "event_id", "left")
            .select("detector", "severity", F.coalesce("label", F.lit(False)).alias("y"))
            .toPandas()
        )
        pr, roc = [], []
        for det, grp in by_det.groupby("detector"):
            y = grp["y"].to_numpy(dtype=int)
            if 0 < y.sum() < len(y):
                c = curves(y, grp["severity"].to_numpy(dtype=float))
                pr.append((f"{det} AP {c['pr_auc']:.3f}", c["recall"], c["precision"]))
                roc.append((f"{det} AUC {c['roc_auc']:.3f}", c["fpr"], c["tpr"]))
        if pr:
            sections += [
                "<h2>PR and ROC curves against the labels</h2>",
                _svg_line(pr, "recall", "precision", diagonal=False),
                _svg_line(roc, "false positive rate", "true positive rate", diagonal=True),
            ]
    title = f"LakeHound run report: {cfg.dataset} {min(dates)} .. {max(dates)}"
    doc = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}"
        "figure.bars{display:inline-block;margin:6px 12px;vertical-align:top}"
        "figcaption{font-size:12px}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>" + "\n".join(sections) + "</body></html>"
    )
    path = report_path(cfg, dates)
    if "://" not in str(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(doc, encoding="utf-8")
    return path
