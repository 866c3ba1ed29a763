"""The HTML run report, from small hand-built Delta tables (expected values by hand)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from xml.etree import ElementTree

from pyspark.sql import SparkSession

from lakehound import io, report
from lakehound.config import Config

D = dt.date(2024, 1, 8)
SCORES = (
    "event_id string, entity_id string, event_ts timestamp, event_date date, detector string, "
    "raw_score double, severity double, is_anomaly boolean, threshold double, "
    "model_version string, "
    "explanation array<struct<feature:string,value:double,contribution:double,method:string>>"
)
EXPL = "array<struct<feature:string,value:double,contribution:double,method:string>>"


def test_report_volumes_detectors_top_and_curves(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg("transactions")
    ts = dt.datetime(2024, 1, 8, 12)
    expl = [("amount_z", 7.5, 7.5, "max_z_shapley")]
    # zscore flags e1 and e2: amount_z parts 6 and 8 (mean |part| 7 over its 2 alerts),
    # hour only in e1's explanation (-2: mean |part| 1).
    zexpl = {
        1: [("amount_z", 7.5, 6.0, "max_z_shapley"), ("hour", 3.0, -2.0, "max_z_shapley")],
        2: [("amount_z", 9.0, 8.0, "max_z_shapley")],
    }
    rows = []
    # e1..e4 ensemble severities 99, 80, 60, 10; e1, e2 labelled anomalies -> perfect ranking.
    for i, sev in enumerate([99.0, 80.0, 60.0, 10.0], start=1):
        rows.append((f"e{i}", "a", ts, D, "ensemble", sev, sev, sev >= 97, 97.0, "v1", expl))
        z = zexpl.get(i, [])
        rows.append((f"e{i}", "a", ts, D, "zscore", sev, sev, i <= 2, 4.0, "v1", z))
    spark.createDataFrame(rows, SCORES).write.format("delta").mode("overwrite").save(
        io.table_path(cfg, "scores")
    )
    spark.createDataFrame(
        [("e1", "a", ts, D, 99.0, ["ensemble"], expl)],
        "event_id string, entity_id string, event_ts timestamp, event_date date, severity double, "
        f"detectors array<string>, explanation {EXPL}",
    ).write.format("delta").save(io.table_path(cfg, "alerts"))
    spark.createDataFrame(
        [("e1", True), ("e2", True), ("e3", False), ("e4", False)],
        "transaction_id string, is_anomaly boolean",
    ).write.format("delta").save(io.table_path(cfg, "labels"))

    path = report.write_report(spark, cfg, [D], {"rows_in": 5.0, "quarantined": 1.0})
    text = path.read_text(encoding="utf-8")
    assert path.name == "run-2024-01-08_2024-01-08.html"
    assert "<td>rows_in</td><td>5</td>" in text
    # zscore flagged 2 of 4, ensemble 1 of 4.
    assert "<td>zscore</td><td>4</td><td>2</td>" in text
    assert "<td>ensemble</td><td>4</td><td>1</td>" in text
    assert "amount_z=7.5 (+7.50)" in text
    assert "<td>max_z_shapley</td>" in text
    # The top alert's bar, and zscore's global importance: mean |part| over 2 alerts.
    assert "<title>amount_z=7.5: +7.5 severity points</title>" in text
    assert "zscore (max_z_shapley, 2 alerts)" in text
    assert "<title>amount_z: +7 severity points</title>" in text
    assert "<title>hour: +1 severity points</title>" in text
    # Severity ranks both labelled anomalies first: AP = 1, ROC-AUC = 1.
    assert "ensemble AP 1.000" in text and "ensemble AUC 1.000" in text
    assert text.count('r="2.5" fill="#d62728"') == 1  # one alert point on the timeline


def test_report_global_importance_includes_the_combined_ensemble(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg("transactions")
    ts = dt.datetime(2024, 1, 8, 12)
    # The ensemble's combined explanations (members' parts x weights, methods joined
    # by +) for its 2 alerts: amount_z mean |part| (9 + 5) / 2 = 7, hour 1 / 2 = 0.5.
    ens = {
        1: [("amount_z", 7.5, 9.0, "max_z_shapley+tree_shap"), ("hour", 3.0, -1.0, "tree_shap")],
        2: [("amount_z", 9.0, 5.0, "max_z_shapley")],
    }
    zscore = {1: [("amount_z", 7.5, 6.0, "max_z_shapley")]}
    rows = []
    for i, sev in enumerate([99.0, 98.0, 10.0], start=1):
        rows.append((f"e{i}", "a", ts, D, "ensemble", sev, sev, i <= 2, 97.0, "v1", ens.get(i, [])))
        z = zscore.get(i, [])
        rows.append((f"e{i}", "a", ts, D, "zscore", sev, sev, bool(z), 4.0, "v1", z))
    spark.createDataFrame(rows, SCORES).write.format("delta").mode("overwrite").save(
        io.table_path(cfg, "scores")
    )
    spark.createDataFrame(
        [(f"e{i}", "a", ts, D, sev, ["zscore"], ens[i]) for i, sev in ((1, 99.0), (2, 98.0))],
        "event_id string, entity_id string, event_ts timestamp, event_date date, severity double, "
        f"detectors array<string>, explanation {EXPL}",
    ).write.format("delta").save(io.table_path(cfg, "alerts"))

    text = report.write_report(spark, cfg, [D], {"rows_in": 3.0}).read_text(encoding="utf-8")
    section = text[text.index("<h2>Global feature importance") :]
    section = section[: section.index("<h2>", 4)]
    # The ensemble first, its methods listed one by one; then each member.
    assert section.index("ensemble (max_z_shapley, tree_shap, 2 alerts)") < section.index(
        "zscore (max_z_shapley, 1 alerts)"
    )
    ens_chart = section[: section.index("zscore (")]
    assert "<title>amount_z: +7 severity points</title>" in ens_chart
    assert "<title>hour: +0.5 severity points</title>" in ens_chart
    assert "<title>amount_z: +6 severity points</title>" in section[len(ens_chart) :]
    # The top alerts' method column lists the combined entries' methods one by one.
    assert "<td>max_z_shapley, tree_shap</td>" in text
    # Every chart of the section is well-formed XML (inline SVG).
    svgs = re.findall(r"<svg .*?</svg>", section)
    assert len(svgs) == 2
    for svg in svgs:
        ElementTree.fromstring(svg)
