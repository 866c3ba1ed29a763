"""Fit the configured detectors on a window of features and register them.

    spark-submit jobs/train.py --config conf/transactions.yaml --date 2024-01-08
    python -m jobs.train --config conf/transactions.yaml

With ``--date D`` the training window is the ``train.train_days`` days before D;
without it, the first ``train.train_days`` dates present in ``features``. The window
is read at a pinned Delta version (recorded as lineage). Rows analysts confirmed as
anomalies (``feedback``) leave the training data on the cluster; at most
``train.sample_rows`` rows reach the driver.

When the window holds enough labelled anomalies (``labels`` table or feedback),
each detector is tuned: its main hyperparameters and its threshold are searched,
maximizing PR-AUC on the latest ``train.tuning.valid_fraction`` of the window
(a time-ordered split). A detector named ``supervised`` is a scikit-learn
classifier trained on the labels (the semi-supervised member of the ensemble).

All models of one run share a version, so ``--set scoring.model_version=V`` pins
the whole ensemble. A first model of a detector becomes production; later ones
are candidates until ``jobs/evaluate.py --promote`` (``train.register_as``).
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
from lakehound.config import Config, DetectorSettings
from lakehound.dates import dates_present
from lakehound.engines import synapseml
from lakehound.errors import InputError
from lakehound.features.build import source_of
from lakehound.features.registry import feature_names, registry_version
from lakehound.lifecycle import supervised, tuning
from udfs.bundle import ModelBundle
from udfs.calibration import Threshold

log = logging.getLogger("lakehound.train")


def training_dates(available: list[dt.date], date: dt.date | None, days: int) -> list[dt.date]:
    if date is None:
        return available[:days]
    start = date - dt.timedelta(days=days)
    return [d for d in available if start <= d < date]


def feature_list(cfg: Config, det: DetectorSettings) -> list[str]:
    # Maps and strings (e.g. the log template counts) stay in the features table for
    # analysts; the detectors take the numeric columns only.
    return det.features or feature_names(source_of(cfg), numeric_only=True)


def _bounded(df: DataFrame, rows: int, seed: int) -> DataFrame:
    total = df.count()
    if total == 0:
        raise InputError("training window has no feature rows")
    fraction = min(1.0, rows / total)
    sample = df.sample(withReplacement=False, fraction=fraction, seed=seed) if fraction < 1 else df
    return sample.limit(rows)


def sample_matrix(df: DataFrame, columns: list[str], rows: int, seed: int) -> np.ndarray:
    """At most ``rows`` rows of ``columns`` as float64, sampled by the executors."""
    pdf = _bounded(df, rows, seed).select(*[F.col(c).cast("double") for c in columns]).toPandas()
    return pdf.to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass(frozen=True)
class Labelled:
    """A bounded labelled sample of the window: features, label, event time (seconds)."""

    X: np.ndarray
    y: np.ndarray
    ts: np.ndarray


def labelled_sample(
    window: DataFrame, labels: DataFrame, columns: list[str], rows: int, seed: int
) -> Labelled:
    """Window rows with their label (unlabelled rows count as normal), sampled on the cluster."""
    joined = window.join(labels.select("event_id", "y"), "event_id", "left")
    pdf = (
        _bounded(joined, rows, seed)
        .select(
            *[F.col(c).cast("double").alias(c) for c in columns],
            F.coalesce(F.col("y"), F.lit(0)).cast("int").alias("_y"),
            F.col("event_ts").cast("double").alias("_ts"),
        )
        .toPandas()
    )
    return Labelled(
        pdf[columns].to_numpy(dtype=np.float64, na_value=np.nan),
        pdf["_y"].to_numpy(dtype=np.int8),
        pdf["_ts"].to_numpy(dtype=np.float64),
    )


def exclude_confirmed(window: DataFrame, confirmed: DataFrame | None) -> DataFrame:
    """The window without the events feedback confirmed as anomalies (an anti-join)."""
    if confirmed is None:
        return window
    return window.join(
        F.broadcast(confirmed.select("event_id").distinct()), "event_id", "left_anti"
    )


def _status(spark: SparkSession, cfg: Config, detector: str) -> str:
    if cfg.train.register_as != "auto":
        return cfg.train.register_as
    return "candidate" if models.has_production(spark, cfg, detector) else "production"


def run(spark: SparkSession, cfg: Config, ctx: RunContext) -> list[models.RegisteredModel]:
    feats = io.read_table(spark, cfg, "features")
    dates = training_dates(dates_present(feats), ctx.date, cfg.train.train_days)
    if not dates:
        raise InputError(f"no feature dates to train on before {ctx.date}")
    from delta.tables import DeltaTable

    # Train on a pinned Delta version of the features so the lineage is exact.
    path = io.table_path(cfg, "features")
    table_version = int(DeltaTable.forPath(spark, path).history(1).collect()[0]["version"])
    pinned = spark.read.format("delta").option("versionAsOf", table_version).load(path)
    window = pinned.where(F.col(io.DATE_COL).isin(dates))
    lineage = models.Lineage(
        feature_registry_version=registry_version(source_of(cfg)),
        training_table=io.table_name(cfg, "features"),
        training_table_version=table_version,
        training_dates=f"{dates[0]}..{dates[-1]}",
    )
    confirmed = feedback.confirmed_anomalies(spark, cfg) if cfg.train.use_feedback else None
    normal = exclude_confirmed(window, confirmed)
    labels = feedback.labelled_events(
        spark, cfg, cfg.train.use_labels_table, cfg.train.use_feedback
    )
    positives = 0
    if labels is not None:
        positives = window.join(labels.where("y = 1"), "event_id", "left_semi").count()
        log.info("training window has %d labelled anomalies", positives)
    version = models.new_version()
    pending = []
    for det in cfg.scoring.detectors:
        cols = feature_list(cfg, det)
        with ctx.stage(f"train {det.id}"):
            if det.engine == "synapseml":
                done = _train_jvm(spark, cfg, det, cols, normal, lineage, version)
            else:
                bundle = _fit_python(cfg, det, cols, window, normal, labels, positives)
                bundle.detector_name = det.id
                bundle.version = version
                done = models.write_bundle(cfg, bundle, lineage, _status(spark, cfg, det.id))
        pending.append(done)
    # All of the run's models in one registry commit: a run killed or failing before
    # it leaves only unreferenced artifact directories, never half an ensemble.
    with ctx.stage("register"):
        models.commit(spark, cfg, pending)
    for p in pending:
        log.info("registered %s %s as %s", p.model.detector, p.model.version, p.model.status)
    return [p.model for p in pending]


def _fit_python(
    cfg: Config,
    det: DetectorSettings,
    cols: list[str],
    window: DataFrame,
    normal: DataFrame,
    labels: DataFrame | None,
    positives: int,
) -> ModelBundle:
    seed, rows = cfg.train.seed, cfg.train.sample_rows
    threshold = Threshold(policy=det.threshold.policy, value=det.threshold.value)
    if det.name == supervised.NAME:
        need = cfg.train.supervised.min_positive_labels
        if labels is None or positives < need or not cfg.train.supervised.enabled:
            raise InputError(
                f"detector '{det.id}' needs at least {need} labelled anomalies in the training "
                f"window (labels table or feedback); found {positives}"
            )
        data = labelled_sample(window, labels, cols, rows, seed)
        params = {**cfg.train.supervised.params, **det.params}
        return supervised.fit_bundle(cols, data.X, data.y, params, threshold)
    tune_cfg = cfg.train.tuning
    if labels is not None and tune_cfg.enabled and positives >= tune_cfg.min_positive_labels:
        data = labelled_sample(window, labels, cols, rows, seed)
        grid = tune_cfg.grid.get(det.name, tuning.DEFAULT_GRIDS.get(det.name, {}))
        try:
            tuned = tuning.tune(
                det.name, det.params, grid, cols, data.X, data.y, data.ts, tune_cfg.valid_fraction
            )
        except ValueError as exc:
            log.warning("not tuning %s: %s", det.id, exc)
        else:
            # Refit on the whole window's normal rows with the winner.
            bundle = ModelBundle.fit(
                det.name,
                tuned.params,
                cols,
                data.X[data.y == 0],
                Threshold("contamination", tuned.contamination),
            )
            bundle.metrics.update(
                {
                    "tuned": 1.0,
                    "valid_pr_auc": tuned.valid_pr_auc,
                    "valid_f1": tuned.valid_f1,
                    "tuned_contamination": tuned.contamination,
                    "trials": float(len(tuned.trials)),
                    "excluded_anomalies": float(np.sum(data.y == 1)),
                }
            )
            log.info(
                "tuned %s: %s contamination %.4f valid PR-AUC %.3f",
                det.id, tuned.params, tuned.contamination, tuned.valid_pr_auc,
            )  # fmt: skip
            return bundle
    X = sample_matrix(normal, cols, rows, seed)
    return ModelBundle.fit(det.name, det.params, cols, X, threshold)


def _train_jvm(
    spark: SparkSession,
    cfg: Config,
    det: DetectorSettings,
    cols: list[str],
    window: DataFrame,
    lineage: models.Lineage,
    version: str,
) -> models.PendingModel:
    """SynapseML Isolation Forest: fitted, calibrated and saved without leaving the JVM."""
    total = window.count()
    fraction = min(1.0, cfg.train.sample_rows / max(total, 1))
    train_df = window.sample(False, fraction, cfg.train.seed) if fraction < 1 else window
    model, meta = synapseml.fit(train_df, det.id, cols, det.params, det.threshold)
    return models.write_artifact(
        cfg,
        detector=det.id,
        version=version,
        params={"engine": "synapseml", **det.params},
        features=cols,
        metrics={"train_rows": float(min(total, cfg.train.sample_rows))},
        write=lambda root: synapseml.save(model, meta, root),
        lineage=lineage,
        status=_status(spark, cfg, det.id),
    )


def main(argv: list[str] | None = None) -> int:
    return run_job("train", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
