"""Evaluate the scored detectors against labels; write the Delta ``evaluations`` table.

    spark-submit jobs/evaluate.py --config conf/transactions.yaml [--date 2024-01-08]
    python -m jobs.evaluate --config conf/transactions.yaml

Labels are the dataset's ``labels`` table (injected or real labels) and the
analysts' ``feedback`` (feedback wins; unlabelled events count as normal). For
every detector and the ensemble, over the run's dates (``--date D``: that date;
otherwise every scored date), and per anomaly type where the labels know it:

* precision, recall, F1 of the alerts (``is_anomaly``), counted exactly in Spark;
* PR-AUC (average precision), ROC-AUC and precision@k of the raw score, computed
  on a bounded sample of events (all of them below ``evaluation.max_rows``);
* alerts per day.

A per-type row compares that type's anomalies against all normal events. Rows
are keyed by the window's last date (``event_date``): re-running replaces them.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs import feedback
from lakehound import io
from lakehound.cli import RunContext, run_job
from lakehound.config import Config
from lakehound.dates import run_dates
from lakehound.errors import InputError
from lakehound.lifecycle import metrics

log = logging.getLogger("lakehound.evaluate")

EVALUATIONS = "evaluations"
ALL = "all"
EVALUATIONS_SCHEMA = (
    "detector string, segment string, model_version string, window_start date, "
    "window_end date, days int, rows long, positives long, alerts long, tp long, fp long, "
    "fn long, precision double, recall double, f1 double, pr_auc double, roc_auc double, "
    "precision_at_k map<string,double>, alerts_per_day double, sample_rows long, "
    "run_id string, evaluated_at timestamp, event_date date"
)


def labelled_scores(scores: DataFrame, labels: DataFrame) -> DataFrame:
    """Scores with y (1 = anomaly, unlabelled = 0) and anomaly_type."""
    return scores.join(labels, "event_id", "left").select(
        "event_id",
        io.DATE_COL,
        "detector",
        "model_version",
        "raw_score",
        F.coalesce("is_anomaly", F.lit(False)).alias("flagged"),
        F.coalesce("y", F.lit(0)).cast("int").alias("y"),
        F.when(F.col("y") == 1, F.col("anomaly_type")).alias("anomaly_type"),
    )


def confusion_counts(df: DataFrame, types: list[str]) -> DataFrame:
    """Exact rows/positives/alerts/tp/fp/fn per (detector, segment), in Spark.

    An anomaly counts in ``all`` and in its own type's segment; a normal event in
    every segment (each type is judged against all normal traffic).
    """
    every = F.array(*[F.lit(s) for s in [ALL, *types]])
    own = F.array(F.lit(ALL), F.col("anomaly_type"))
    segs = F.when(F.col("y") == 1, F.filter(own, lambda x: x.isNotNull())).otherwise(every)
    y, flagged = F.col("y") == 1, F.col("flagged")
    return (
        df.withColumn("segment", F.explode(segs))
        .groupBy("detector", "segment")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum(y.cast("long")).alias("positives"),
            F.sum(flagged.cast("long")).alias("alerts"),
            F.sum((y & flagged).cast("long")).alias("tp"),
            F.sum((~y & flagged).cast("long")).alias("fp"),
            F.sum((y & ~flagged).cast("long")).alias("fn"),
            F.max("model_version").alias("model_version"),
        )
    )


def event_sample(df: DataFrame, events: int, max_rows: int) -> DataFrame:
    """Whole events (every detector's row of a sampled event), about ``max_rows`` of them."""
    if events <= max_rows:
        return df
    # Hash of the event id: the same events for every detector, and stable across runs.
    keep = max_rows / events
    return df.where((F.abs(F.xxhash64("event_id")) % 1_000_000) < int(keep * 1_000_000))


def ranking_metrics(sample: pd.DataFrame, types: list[str], ks: list[int]) -> pd.DataFrame:
    """PR-AUC, ROC-AUC, precision@k per (detector, segment) on the driver-side sample."""
    out: list[dict[str, Any]] = []
    for det, g in sample.groupby("detector", sort=True):
        y = g["y"].to_numpy()
        s = g["raw_score"].to_numpy(dtype=np.float64)
        kinds = g["anomaly_type"].to_numpy()
        for seg in [ALL, *types]:
            mask = np.ones(len(g), bool) if seg == ALL else (y == 0) | (kinds == seg)
            ys, ss = y[mask], s[mask]
            out.append(
                {
                    "detector": det,
                    "segment": seg,
                    "pr_auc": metrics.average_precision(ys, ss),
                    "roc_auc": metrics.roc_auc(ys, ss),
                    "precision_at_k": {
                        str(k): metrics.precision_at_k(ys, ss, k) for k in ks if len(ys)
                    },
                    "sample_rows": int(mask.sum()),
                }
            )
    return pd.DataFrame(out)


def evaluate(
    spark: SparkSession, cfg: Config, scores: DataFrame, labels: DataFrame, dates: list[dt.date]
) -> pd.DataFrame:
    """One row per (detector, segment) for the window ``dates``, as pandas."""
    df = labelled_scores(scores, labels).persist()
    try:
        types = sorted(
            r[0] for r in df.where("y = 1").select("anomaly_type").distinct().collect() if r[0]
        )
        counts = confusion_counts(df, types).toPandas()
        events = df.where(F.col("detector") == "ensemble").count()
        sample = (
            event_sample(df, events, cfg.evaluation.max_rows)
            .select("detector", "raw_score", "y", "anomaly_type")
            .toPandas()
        )
    finally:
        df.unpersist()
    ranks = ranking_metrics(sample, types, cfg.evaluation.precision_at_k)
    res = counts.merge(ranks, on=["detector", "segment"], how="left")
    res["precision"] = np.where(res["alerts"] > 0, res["tp"] / res["alerts"].clip(lower=1), 0.0)
    res["recall"] = np.where(res["positives"] > 0, res["tp"] / res["positives"].clip(lower=1), 0.0)
    pr = res["precision"] + res["recall"]
    res["f1"] = np.where(pr > 0, 2 * res["precision"] * res["recall"] / pr.where(pr > 0, 1), 0.0)
    res["days"] = len(dates)
    res["alerts_per_day"] = res["alerts"] / len(dates)
    res["window_start"], res["window_end"] = min(dates), max(dates)
    return res.sort_values(["detector", "segment"]).reset_index(drop=True)


def to_table(spark: SparkSession, res: pd.DataFrame, ctx: RunContext) -> DataFrame:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = []
    for r in res.to_dict("records"):
        rows.append(
            (
                r["detector"], r["segment"], r["model_version"], r["window_start"],
                r["window_end"], int(r["days"]), int(r["rows"]), int(r["positives"]),
                int(r["alerts"]), int(r["tp"]), int(r["fp"]), int(r["fn"]),
                float(r["precision"]), float(r["recall"]), float(r["f1"]),
                metrics.stored(r["pr_auc"]), metrics.stored(r["roc_auc"]),
                {k: float(v) for k, v in (r["precision_at_k"] or {}).items()},
                float(r["alerts_per_day"]), int(r["sample_rows"] or 0),
                ctx.run_id, now, r["window_end"],
            )
        )  # fmt: skip
    return spark.createDataFrame(rows, EVALUATIONS_SCHEMA)


def report(res: pd.DataFrame) -> str:
    head = f"{'detector':<22}{'segment':<14}{'prec':>7}{'recall':>8}{'f1':>7}{'pr_auc':>8}{'roc_auc':>8}{'alerts/d':>10}"
    lines = [head]
    for r in res.to_dict("records"):
        lines.append(
            f"{r['detector']:<22}{r['segment']:<14}{r['precision']:7.3f}{r['recall']:8.3f}"
            f"{r['f1']:7.3f}{r['pr_auc']:8.3f}{r['roc_auc']:8.3f}{r['alerts_per_day']:10.1f}"
        )
    return "\n".join(lines)


def run(spark: SparkSession, cfg: Config, ctx: RunContext) -> pd.DataFrame:
    scores = io.read_table(spark, cfg, "scores")
    dates = run_dates(scores, ctx.date, io.table_name(cfg, "scores"))
    labels = feedback.labelled_events(spark, cfg)
    if labels is None:
        raise InputError(
            f"nothing to evaluate against: neither {io.table_name(cfg, 'labels')} nor "
            f"{io.table_name(cfg, feedback.FEEDBACK)} exists"
        )
    with ctx.stage("evaluate"):
        res = evaluate(spark, cfg, scores.where(F.col(io.DATE_COL).isin(dates)), labels, dates)
        io.replace_dates(to_table(spark, res, ctx), cfg, EVALUATIONS, [max(dates)])
    print(
        f"LakeHound evaluation ({cfg.dataset}, {min(dates)}..{max(dates)})\n" + report(res),
        flush=True,
    )
    return res


def main(argv: list[str] | None = None) -> int:
    return run_job("evaluate", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
