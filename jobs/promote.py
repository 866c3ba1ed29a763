"""Promote candidate models that beat production on PR-AUC over the same window.

    spark-submit jobs/promote.py --config conf/transactions.yaml [--date 2024-01-15]
    python -m jobs.promote --config conf/transactions.yaml

For each configured detector with a candidate version (``jobs/train.py`` registers
a retrained model as a candidate once a production model exists): candidate and
production score the same labelled sample of the latest ``evaluation.window_days``
feature dates (up to ``--date D``), and the candidate becomes production only if
its PR-AUC beats production's by more than ``evaluation.min_pr_auc_gain``;
otherwise it is archived. Every decision and its numbers go to the Delta
``promotions`` table (keyed by detector and candidate: re-running replaces it).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs import feedback
from lakehound import io, models
from lakehound.cli import RunContext, run_job
from lakehound.config import Config
from lakehound.dates import dates_present
from lakehound.engines import synapseml
from lakehound.errors import InputError
from lakehound.lifecycle import metrics, promotion

log = logging.getLogger("lakehound.promote")

PROMOTIONS = "promotions"
PROMOTIONS_SCHEMA = (
    "detector string, candidate_version string, production_version string, "
    "window_start date, window_end date, rows long, positives long, "
    "candidate_pr_auc double, production_pr_auc double, min_gain double, "
    "promoted boolean, reason string, run_id string, decided_at timestamp"
)


def window_dates(available: list[dt.date], date: dt.date | None, days: int) -> list[dt.date]:
    upto = [d for d in available if date is None or d <= date]
    return upto[-days:]


@dataclass(frozen=True)
class Sample:
    df: DataFrame  # bounded rows of the window, with y, cached
    y: np.ndarray


def labelled_window(
    spark: SparkSession, cfg: Config, dates: list[dt.date], labels: DataFrame
) -> Sample:
    feats = io.read_table(spark, cfg, "features").where(F.col(io.DATE_COL).isin(dates))
    total = feats.count()
    fraction = min(1.0, cfg.evaluation.max_rows / max(total, 1))
    if fraction < 1:
        feats = feats.sample(False, fraction, cfg.train.seed)
    df = (
        feats.join(labels.select("event_id", "y"), "event_id", "left")
        .withColumn("y", F.coalesce(F.col("y"), F.lit(0)).cast("int"))
        .orderBy("event_id")
        .cache()
    )
    y = np.array([r[0] for r in df.select("y").collect()], dtype=np.int8)
    return Sample(df, y)


def raw_scores(model: models.RegisteredModel, sample: Sample) -> np.ndarray:
    """The model's raw scores on the sample rows, in the order of ``sample.y``."""
    root = model.verified_dir()  # checksum first: nothing unverified is loaded
    if (root / "model.pkl").exists():
        bundle = model.load()
        pdf = sample.df.select(*[F.col(c).cast("double") for c in bundle.features]).toPandas()
        return bundle.score(pdf.to_numpy(dtype=np.float64, na_value=np.nan), top_k=1).raw
    pipeline, meta = synapseml.load(root)
    df, col = synapseml.score_struct(sample.df, model=pipeline, meta=meta, top_k=1)
    # Sorted again by the key: a JVM transform is not promised to keep row order.
    rows = df.select("event_id", col.getField("raw_score").alias("r")).orderBy("event_id").collect()
    return np.array([r["r"] for r in rows], dtype=np.float64)


def run(spark: SparkSession, cfg: Config, ctx: RunContext) -> list[promotion.Decision]:
    labels = feedback.labelled_events(
        spark, cfg, cfg.train.use_labels_table, cfg.train.use_feedback
    )
    if labels is None:
        raise InputError("promotion needs labels: no labels table and no feedback")
    todo: list[tuple[str, models.RegisteredModel]] = []
    for d in cfg.scoring.detectors:
        found = models.candidates(spark, cfg, d.id)
        if found:
            todo.append((d.id, found[0]))
    if not todo:
        log.info("no candidate models to promote")
        return []
    dates = window_dates(
        dates_present(io.read_table(spark, cfg, "features")), ctx.date, cfg.evaluation.window_days
    )
    if not dates:
        raise InputError(f"no feature dates up to {ctx.date} to compare models on")
    sample = labelled_window(spark, cfg, dates, labels)
    decisions, rows = [], []
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    try:
        for det, cand in todo:
            cand_ap = metrics.average_precision(sample.y, raw_scores(cand, sample))
            prod_ap: float | None = None
            prod_version = None
            if models.has_production(spark, cfg, det):
                prod = models.resolve(spark, cfg, det)
                prod_version = prod.version
                prod_ap = metrics.average_precision(sample.y, raw_scores(prod, sample))
            decision = promotion.decide(cand_ap, prod_ap, cfg.evaluation.min_pr_auc_gain)
            models.set_status(
                spark, cfg, det, cand.version, "production" if decision.promote else "archived"
            )
            log.info("%s %s: %s", det, cand.version, decision.reason)
            decisions.append(decision)
            rows.append(
                (
                    det, cand.version, prod_version, min(dates), max(dates), len(sample.y),
                    int(sample.y.sum()), metrics.stored(cand_ap), metrics.stored(prod_ap),
                    cfg.evaluation.min_pr_auc_gain, decision.promote, decision.reason,
                    ctx.run_id, now,
                )
            )  # fmt: skip
    finally:
        sample.df.unpersist()
    _record(spark, cfg, spark.createDataFrame(rows, PROMOTIONS_SCHEMA))
    return decisions


def _record(spark: SparkSession, cfg: Config, df: DataFrame) -> None:
    if not io.table_exists(spark, cfg, PROMOTIONS):
        io.append(df, cfg, PROMOTIONS)
        return
    from delta.tables import DeltaTable

    (
        DeltaTable.forPath(spark, io.table_path(cfg, PROMOTIONS))
        .alias("t")
        .merge(
            df.alias("s"),
            "t.detector = s.detector AND t.candidate_version = s.candidate_version",
        )
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )


def main(argv: list[str] | None = None) -> int:
    return run_job("promote", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
