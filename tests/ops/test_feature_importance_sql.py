"""sql/feature_importance.sql on the local Spark session, over a hand-built Delta
``scores`` table (expected values by hand). The same file runs through JDBC in the
integration tests (tests/ops/test_sql_server.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from pyspark.sql import SparkSession

from lakehound import io
from lakehound.config import Config

SQL = Path(__file__).resolve().parents[2] / "sql" / "feature_importance.sql"
SCORES = (
    "event_id string, entity_id string, event_ts timestamp, event_date date, detector string, "
    "raw_score double, severity double, is_anomaly boolean, threshold double, "
    "model_version string, "
    "explanation array<struct<feature:string,value:double,contribution:double,method:string>>"
)


def test_feature_importance_per_detector(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg("transactions")
    old, new = dt.date(2024, 1, 7), dt.date(2024, 1, 8)
    ts = dt.datetime(2024, 1, 8, 12)
    both = "max_z_shapley+tree_shap"
    rows = [
        # Latest date. Ensemble alerts e1, e2: amount (9 + 5) / 2 = 7, hour |-1| / 2 = 0.5.
        (
            "e1",
            "ensemble",
            new,
            True,
            [("amount", 7.5, 9.0, both), ("hour", 3.0, -1.0, "tree_shap")],
        ),
        ("e2", "ensemble", new, True, [("amount", 9.0, 5.0, "max_z_shapley")]),
        ("e3", "ensemble", new, False, []),
        # zscore's one alert: amount 6; a flagged row without explanation does not count.
        ("e1", "zscore", new, True, [("amount", 7.5, 6.0, "max_z_shapley")]),
        ("e2", "zscore", new, True, []),
        # An earlier date: not in the answer.
        ("e0", "zscore", old, True, [("velocity", 2.0, 50.0, "max_z_shapley")]),
    ]
    spark.createDataFrame(
        [(e, "a", ts, d, det, 1.0, 99.0, f, 97.0, "v1", x) for e, det, d, f, x in rows], SCORES
    ).write.format("delta").save(io.table_path(cfg, "scores"))
    # The query as written, on a temporary view of the table: the shared test session's
    # catalog may hold another test's transactions.scores.
    io.read_table(spark, cfg, "scores").createOrReplaceTempView("fi_scores")
    text = SQL.read_text(encoding="utf-8")
    query = "\n".join(ln for ln in text.splitlines() if not ln.startswith("--")).strip()
    got = spark.sql(query.rstrip(";").replace("transactions.scores", "fi_scores")).collect()

    assert [tuple(r) for r in got] == [
        ("ensemble", 2, 1, "amount", 7.0, "#" * 20, "max_z_shapley, tree_shap"),
        ("ensemble", 2, 2, "hour", 0.5, "#" * 1, "tree_shap"),
        ("zscore", 1, 1, "amount", 6.0, "#" * 20, "max_z_shapley"),
    ]
