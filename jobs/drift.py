"""Drift of features, scores and alert rate since training; the Delta ``drift`` table.

    spark-submit jobs/drift.py --config conf/transactions.yaml [--date 2024-01-14]
    python -m jobs.drift --config conf/transactions.yaml [--set drift.retrain=true]

Reference: the production models' training window, read at the Delta version they
were trained on (the registry's lineage). Recent: the last ``drift.recent_days``
feature dates (up to ``--date D``). Per feature: population stability index (PSI)
and the KS statistic, on bounded samples drawn by the executors. Per detector and
the ensemble: PSI/KS of the severity in ``scores`` (reference: the training dates'
scores when they were scored, else the calibration's uniform 0-100 by
construction) and the alert rate against training. Any significant drift sets
``retrain_recommended``; with ``drift.retrain`` the job then retrains (candidates)
and runs the promotion. Rows are keyed by the recent window's last date.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehound import io, models
from lakehound.cli import RunContext, run_job
from lakehound.config import Config
from lakehound.dates import dates_present
from lakehound.errors import InputError
from lakehound.lifecycle import drift, metrics

log = logging.getLogger("lakehound.drift")

DRIFT = "drift"
DRIFT_SCHEMA = (
    "kind string, name string, detector string, model_version string, psi double, "
    "ks double, reference_value double, recent_value double, level string, "
    "drifted boolean, retrain_recommended boolean, reference_dates string, "
    "recent_dates string, run_id string, computed_at timestamp, event_date date"
)


def parse_dates(span: str) -> tuple[dt.date, dt.date]:
    first, _, last = span.partition("..")
    return dt.date.fromisoformat(first), dt.date.fromisoformat(last or first)


def _sample(df: DataFrame, cols: list[str], rows: int, seed: int) -> dict[str, np.ndarray]:
    total = df.count()
    if total == 0:
        return {c: np.array([]) for c in cols}
    frac = min(1.0, rows / total)
    part = df.sample(False, frac, seed) if frac < 1 else df
    pdf = part.select(*[F.col(c).cast("double").alias(c) for c in cols]).limit(rows).toPandas()
    return {c: pdf[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in cols}


def _between(first: dt.date, last: dt.date) -> F.Column:
    return (F.col(io.DATE_COL) >= F.lit(first)) & (F.col(io.DATE_COL) <= F.lit(last))


def run(spark: SparkSession, cfg: Config, ctx: RunContext) -> dict[str, Any]:
    prods = [models.resolve(spark, cfg, d.id) for d in cfg.scoring.detectors]
    ref_first, ref_last = parse_dates(prods[0].training_dates)
    feats_now = io.read_table(spark, cfg, "features")
    available = [d for d in dates_present(feats_now) if ctx.date is None or d <= ctx.date]
    recent = available[-cfg.drift.recent_days :]
    if not recent:
        raise InputError(f"no feature dates up to {ctx.date} to compare with training")
    ref_span, recent_span = f"{ref_first}..{ref_last}", f"{recent[0]}..{recent[-1]}"
    d = cfg.drift
    out: list[tuple[Any, ...]] = []
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)

    def add(kind: str, name: str, det: str, version: str, psi: float, ks: float,
            ref_v: float, rec_v: float, drifted: bool, level: str) -> None:  # fmt: skip
        out.append(
            (kind, name, det, version, metrics.stored(psi), metrics.stored(ks),
             metrics.stored(ref_v), metrics.stored(rec_v), level, drifted, False, ref_span,
             recent_span, ctx.run_id, now, recent[-1])
        )  # fmt: skip

    # Features, reference at the pinned training version (time travel).
    path = io.table_path(cfg, "features")
    pinned = (
        spark.read.format("delta").option("versionAsOf", prods[0].training_table_version).load(path)
    )
    cols = sorted({c for p in prods for c in p.features})
    ref = _sample(pinned.where(_between(ref_first, ref_last)), cols, d.sample_rows, cfg.train.seed)
    cur = _sample(
        feats_now.where(F.col(io.DATE_COL).isin(recent)), cols, d.sample_rows, cfg.train.seed
    )
    for c in cols:
        p, k = drift.psi(ref[c], cur[c], d.psi_bins), drift.ks_statistic(ref[c], cur[c])
        level = drift.level(p, d.psi_moderate, d.psi_significant)
        add("feature", c, "", "", p, k, float(np.nanmean(ref[c])) if ref[c].size else float("nan"),
            float(np.nanmean(cur[c])) if cur[c].size else float("nan"),
            level == "significant" or k >= d.ks_significant, level)  # fmt: skip

    # Scores and alert rate, per detector and the ensemble.
    if io.table_exists(spark, cfg, "scores"):
        scores = io.read_table(spark, cfg, "scores")
        trained = {p.detector: p for p in prods}
        for det in [*trained, "ensemble"]:
            mine = scores.where(F.col("detector") == det)
            rec = mine.where(F.col(io.DATE_COL).isin(recent))
            old = mine.where(_between(ref_first, ref_last))
            r = _sample(
                rec.withColumn("a", F.col("is_anomaly").cast("double")),
                ["severity", "a"],
                d.sample_rows,
                1,
            )
            o = _sample(
                old.withColumn("a", F.col("is_anomaly").cast("double")),
                ["severity", "a"],
                d.sample_rows,
                1,
            )
            if r["severity"].size == 0:
                continue
            # Severity is the ECDF of the training scores: uniform on training data.
            ref_sev = o["severity"] if o["severity"].size else np.linspace(0, 100, 1001)
            p = drift.psi(ref_sev, r["severity"], d.psi_bins)
            k = drift.ks_statistic(ref_sev, r["severity"])
            level = drift.level(p, d.psi_moderate, d.psi_significant)
            version = trained[det].version if det in trained else ""
            add("score", "severity", det, version, p, k, float(np.mean(ref_sev)),
                float(np.mean(r["severity"])), level == "significant", level)  # fmt: skip
            ref_rate = (
                float(np.mean(o["a"]))
                if o["a"].size
                else (trained[det].metrics or {}).get("train_anomaly_rate", float("nan"))
                if det in trained
                else float("nan")
            )
            rec_rate = float(np.mean(r["a"]))
            ratio = rec_rate / ref_rate if ref_rate and ref_rate == ref_rate else float("nan")
            shifted = bool(
                np.isfinite(ratio)
                and (ratio > d.alert_rate_ratio or ratio < 1 / d.alert_rate_ratio)
            )
            add("alert_rate", "alert_rate", det, version, float("nan"), float("nan"), ref_rate,
                rec_rate, shifted, "significant" if shifted else "stable")  # fmt: skip

    recommended = any(row[9] for row in out)
    rows = [(*row[:10], recommended, *row[11:]) for row in out]
    io.replace_dates(spark.createDataFrame(rows, DRIFT_SCHEMA), cfg, DRIFT, [recent[-1]])
    drifted = [f"{r[0]}:{r[2] or r[1]}" for r in out if r[9]]
    print(
        f"LakeHound drift ({cfg.dataset}, training {ref_span} vs recent {recent_span}): "
        + (
            f"retrain recommended ({', '.join(drifted)})" if recommended else "no significant drift"
        ),
        flush=True,
    )
    if recommended and d.retrain:
        from jobs import promote, train

        with ctx.stage("retrain"):
            retrain_ctx = RunContext("train", recent[-1] + dt.timedelta(days=1), ctx.run_id)
            train.run(
                spark,
                cfg.model_copy(
                    update={"train": cfg.train.model_copy(update={"register_as": "candidate"})}
                ),
                retrain_ctx,
            )
            promote.run(spark, cfg, RunContext("promote", recent[-1], ctx.run_id))
    return {"retrain_recommended": recommended, "drifted": drifted, "rows": len(out)}


def main(argv: list[str] | None = None) -> int:
    return run_job("drift", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
