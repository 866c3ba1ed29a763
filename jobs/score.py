"""Score features with the registered detectors; write ``scores`` and ``alerts``.

    spark-submit jobs/score.py --config conf/transactions.yaml --date 2024-01-08
    python -m jobs.score --config conf/transactions.yaml [--set scoring.model_version=v...]

Every detector scores every row in one pass (one iterator pandas UDF per detector,
model loaded once per worker). ``scores`` holds one row per (event, detector) plus
the ``ensemble`` row; ``alerts`` one row per event whose ensemble severity reaches
``scoring.alert_severity``. Both replace exactly the run's dates.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehound import io, models
from lakehound.cli import RunContext, run_job
from lakehound.config import Config
from lakehound.dates import run_dates
from lakehound.engines import synapseml
from lakehound.features.build import source_of
from lakehound.features.registry import registry_version
from udfs.scoring import score_column

log = logging.getLogger("lakehound.score")

KEY_COLS = ["event_id", "entity_id", "event_ts", io.DATE_COL]


@dataclass(frozen=True)
class Member:
    """One detector of the ensemble, ready to attach its score struct to a DataFrame."""

    id: str
    model: models.RegisteredModel
    weight: float
    threshold: float
    # DataFrame -> (DataFrame with whatever the engine needs, score struct column)
    attach: Callable[[DataFrame], tuple[DataFrame, Column]]


def load_members(spark: SparkSession, cfg: Config) -> list[Member]:
    top_k = cfg.scoring.top_features
    features_version = registry_version(source_of(cfg))
    out = []
    for det in cfg.scoring.detectors:
        reg = models.resolve(spark, cfg, det.id, cfg.scoring.model_version)
        reg.check_features(features_version)
        if det.engine == "synapseml":
            pipeline, meta = synapseml.load(reg.verified_dir())
            attach = functools.partial(
                synapseml.score_struct, model=pipeline, meta=meta, top_k=top_k
            )
            out.append(Member(det.id, reg, det.weight, meta.threshold, attach))
            continue
        # Loaded on the driver too (checksum verified) for its fitted threshold.
        bundle = reg.load()
        payload = reg.read_verified()
        # The registry's checksum covers the artifact directory; the workers check
        # the broadcast bytes themselves against this digest of the verified file.
        payload_sha = hashlib.sha256(payload).hexdigest()

        def _python(
            df: DataFrame,
            payload: bytes = payload,
            sha: str = payload_sha,
            features: list[str] = reg.features,
        ) -> tuple[DataFrame, Column]:
            return df, score_column(df, payload, sha, features, top_k)

        out.append(Member(det.id, reg, det.weight, bundle.threshold, _python))
    return out


def score_wide(features: DataFrame, members: list[Member], cfg: Config) -> DataFrame:
    """One row per event: a struct column per detector plus the ensemble's columns."""
    df = features
    structs: list[Column] = []
    for m in members:
        df, col = m.attach(df)
        structs.append(col.alias(m.id))
    wide = df.select(*KEY_COLS, *structs)
    sev = {m.id: F.col(f"{m.id}.severity") for m in members}
    if cfg.scoring.ensemble == "weighted":
        total = sum(m.weight for m in members) or 1.0
        weights = {m.id: m.weight / total for m in members}
    else:
        weights = {m.id: 1.0 / len(members) for m in members}
    if cfg.scoring.ensemble == "max":
        combined = F.greatest(*sev.values()) if len(sev) > 1 else sev[members[0].id]
    else:
        combined = sum((sev[k] * w for k, w in weights.items()), F.lit(0.0))
    # What each member put into the ensemble (for max: its own severity).
    share = {k: 1.0 if cfg.scoring.ensemble == "max" else w for k, w in weights.items()}
    contributions = F.create_map(*[x for k, w in share.items() for x in (F.lit(k), sev[k] * w)])
    # The explanation of the member that is most sure this event is anomalous.
    strongest = F.array_max(
        F.array(
            *[
                F.struct(
                    F.col(f"{m.id}.severity").alias("s"), F.col(f"{m.id}.explanation").alias("e")
                )
                for m in members
            ]
        )
    )["e"]
    flagged_by = F.filter(
        F.array(*[F.when(F.col(f"{m.id}.is_anomaly"), F.lit(m.id)) for m in members]),
        lambda x: x.isNotNull(),
    )
    return wide.select(
        "*",
        combined.alias("_ens_severity"),
        contributions.alias("_contributions"),
        strongest.alias("_ens_explanation"),
        flagged_by.alias("_flagged_by"),
    )


def to_scores(wide: DataFrame, members: list[Member], cfg: Config, ctx: RunContext) -> DataFrame:
    now = F.lit(dt.datetime.now(dt.UTC).replace(tzinfo=None))
    rows = [
        F.struct(
            F.lit(m.id).alias("detector"),
            F.col(f"{m.id}.raw_score").alias("raw_score"),
            F.col(f"{m.id}.severity").alias("severity"),
            F.col(f"{m.id}.is_anomaly").alias("is_anomaly"),
            F.lit(m.threshold).alias("threshold"),
            F.lit(m.model.version).alias("model_version"),
            F.col(f"{m.id}.explanation").alias("explanation"),
        )
        for m in members
    ]
    threshold = cfg.scoring.alert_severity
    rows.append(
        F.struct(
            F.lit("ensemble").alias("detector"),
            F.col("_ens_severity").alias("raw_score"),
            F.col("_ens_severity").alias("severity"),
            (F.col("_ens_severity") >= threshold).alias("is_anomaly"),
            F.lit(threshold).alias("threshold"),
            F.lit(",".join(m.model.version for m in members)).alias("model_version"),
            F.col("_ens_explanation").alias("explanation"),
        )
    )
    long = wide.select(*KEY_COLS, F.explode(F.array(*rows)).alias("s"))
    return long.select(
        *KEY_COLS,
        "s.detector",
        "s.raw_score",
        "s.severity",
        "s.is_anomaly",
        "s.threshold",
        "s.model_version",
        "s.explanation",
        now.alias("scored_at"),
        F.lit(ctx.run_id).alias("run_id"),
    )


def to_alerts(wide: DataFrame, members: list[Member], cfg: Config, ctx: RunContext) -> DataFrame:
    now = F.lit(dt.datetime.now(dt.UTC).replace(tzinfo=None))
    return wide.where(F.col("_ens_severity") >= cfg.scoring.alert_severity).select(
        *KEY_COLS,
        F.col("_ens_severity").alias("severity"),
        F.col("_flagged_by").alias("detectors"),
        F.col("_contributions").alias("contributions"),
        F.col("_ens_explanation").alias("explanation"),
        F.lit(",".join(m.model.version for m in members)).alias("model_version"),
        F.lit(ctx.run_id).alias("run_id"),
        now.alias("alerted_at"),
    )


def run(spark: SparkSession, cfg: Config, ctx: RunContext) -> dict[str, int]:
    features = io.read_table(spark, cfg, "features")
    dates = run_dates(features, ctx.date, io.table_name(cfg, "features"))
    features = features.where(F.col(io.DATE_COL).isin(dates))
    if ctx.date is not None and not features.limit(1).count():
        from lakehound.errors import InputError

        # As validate does for a missing input partition: "scored 0 events" and exit 0
        # would let the DAG go on as if the date had been scored.
        raise InputError(
            f"no features for {ctx.date} in {io.table_name(cfg, 'features')} "
            f"({io.table_path(cfg, 'features')}); run jobs.featurize for that date first"
        )
    members = load_members(spark, cfg)
    with ctx.stage("score"):
        # Persisted so the UDFs run once for both outputs.
        wide = score_wide(features, members, cfg).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            io.replace_dates(to_scores(wide, members, cfg, ctx), cfg, "scores", dates)
            io.replace_dates(to_alerts(wide, members, cfg, ctx), cfg, "alerts", dates)
        finally:
            wide.unpersist()
    in_dates = F.col(io.DATE_COL).isin(dates)
    counts = {
        "scored": io.read_table(spark, cfg, "scores")
        .where(in_dates & (F.col("detector") == "ensemble"))
        .count(),
        "alerts": io.read_table(spark, cfg, "alerts").where(in_dates).count(),
    }
    log.info("scored %(scored)d events, %(alerts)d alerts", counts)
    return counts


def main(argv: list[str] | None = None) -> int:
    return run_job("score", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
