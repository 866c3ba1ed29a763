"""Run the batch stages in order: validate -> featurize -> train -> score -> summary.

    spark-submit jobs/pipeline.py --config conf/transactions.yaml [--date 2024-01-08]
    python -m jobs.pipeline --config conf/transactions.yaml

Each stage is also its own job (jobs/validate.py, featurize.py, train.py, score.py);
the pipeline calls the same ``run`` functions in one SparkSession. A model is
trained when the registry has no production model for a configured detector
(retrain with jobs/train.py); re-running a date replaces that date's output in
every table.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs import featurize, score, train, validate
from lakehound import io, models, report
from lakehound.cli import RunContext, run_job
from lakehound.config import Config
from lakehound.errors import ModelError

log = logging.getLogger("lakehound.pipeline")


def needs_training(spark: SparkSession, cfg: Config) -> bool:
    for det in cfg.scoring.detectors:
        try:
            models.resolve(spark, cfg, det.id, cfg.scoring.model_version)
        except ModelError:
            return True
    return False


def summarize(spark: SparkSession, cfg: Config, dates: list[Any]) -> dict[str, float]:
    """Rows in, flagged, and precision/recall of alerts against the labels table."""
    in_dates = F.col(io.DATE_COL).isin(dates)
    scored = io.read_table(spark, cfg, "scores").where(in_dates & (F.col("detector") == "ensemble"))
    alerts = io.read_table(spark, cfg, "alerts").where(in_dates)
    out: dict[str, float] = {
        "events_scored": float(scored.count()),
        "alerts": float(alerts.count()),
    }
    labels = io.event_labels(spark, cfg)
    if labels is not None and io.DATE_COL in labels.columns:
        positives = labels.where(in_dates & F.col("is_anomaly")).select("event_id")
        tp = alerts.join(positives, "event_id", "inner").count()
        n_pos = positives.count()
        out["labelled_anomalies"] = float(n_pos)
        out["precision"] = tp / out["alerts"] if out["alerts"] else 0.0
        out["recall"] = tp / n_pos if n_pos else 0.0
    return out


def run(spark: SparkSession, cfg: Config, ctx: RunContext) -> dict[str, float]:
    with ctx.stage("validate"):
        checked = validate.run(spark, cfg, ctx)
    with ctx.stage("featurize"):
        featurize.run(spark, cfg, ctx)
    if needs_training(spark, cfg):
        with ctx.stage("train"):
            train.run(spark, cfg, ctx)
    with ctx.stage("score"):
        score.run(spark, cfg, ctx)
    features = io.read_table(spark, cfg, "features")
    dates = (
        [ctx.date]
        if ctx.date
        else [r[0] for r in features.select(io.DATE_COL).distinct().collect()]
    )
    summary = {
        "rows_in": float(checked.rows_in),
        "validated": float(checked.validated),
        "quarantined": float(checked.quarantined),
        **summarize(spark, cfg, dates),
    }
    lines = [
        f"  {k:<29} {v:,.3f}" if v % 1 else f"  {k:<29} {int(v):,}" for k, v in summary.items()
    ]
    lines += [f"  time {k:<24} {v:6.1f}s" for k, v in ctx.timings.items()]
    print("LakeHound pipeline summary (" + cfg.dataset + ")\n" + "\n".join(lines), flush=True)
    print("report:", report.write_report(spark, cfg, dates, summary), flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    return run_job("pipeline", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
