"""Score feature rows with the production ensemble, on Spark or in process.

:func:`load_members` resolves the ensemble from the registry (checksum verified).
:func:`score_wide` attaches every detector's score struct to a Spark DataFrame and
combines them into the ensemble's severity, contributions and explanation;
:func:`to_scores` and :func:`to_alerts` derive the two output tables from it.
:func:`score_pandas` does the same for an in-process pandas batch (the real-time
endpoint), with the same numpy bundle code (:meth:`udfs.bundle.ModelBundle.score_arrays`)
and the same ensemble arithmetic, in the same order, so both paths give the same
numbers; :func:`wide_frame` turns its result back into :func:`score_wide`'s shape
so the endpoint's rows reach Delta through the same :func:`to_scores` / :func:`to_alerts`.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DateType,
    DoubleType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehound import io, models
from lakehound.config import Config
from lakehound.engines import synapseml
from lakehound.errors import ModelError
from lakehound.features.build import source_of
from lakehound.features.registry import registry_version
from udfs.bundle import METHODS
from udfs.scoring import SCORE_TYPE, ensemble_explanation, score_column

if TYPE_CHECKING:
    from lakehound.cli import RunContext
    from udfs.bundle import ModelBundle

KEY_COLS = ["event_id", "entity_id", "event_ts", io.DATE_COL]
# One explanation entry: (feature, value as read, contribution, attribution method),
# strongest first: the fields of udfs.scoring.SCORE_TYPE's explanation entries.
Explanation = list[tuple[str, float, float, str | None]]


@dataclass(frozen=True)
class Member:
    """One detector of the ensemble, ready to attach its score struct to a DataFrame."""

    id: str
    model: models.RegisteredModel
    weight: float
    threshold: float
    # DataFrame -> (DataFrame with whatever the engine needs, score struct column)
    attach: Callable[[DataFrame], tuple[DataFrame, Column]]
    # The verified Python bundle, for in-process scoring; None for JVM engines.
    bundle: ModelBundle | None = None


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

        out.append(Member(det.id, reg, det.weight, bundle.threshold, _python, bundle))
    return out


def _weights(members: list[Member], cfg: Config) -> dict[str, float]:
    if cfg.scoring.ensemble == "weighted":
        total = sum(m.weight for m in members) or 1.0
        return {m.id: m.weight / total for m in members}
    return {m.id: 1.0 / len(members) for m in members}


def _share(members: list[Member], cfg: Config) -> dict[str, float]:
    """What each member put into the ensemble per unit of its severity (max: all of it)."""
    weights = _weights(members, cfg)
    return {k: 1.0 if cfg.scoring.ensemble == "max" else w for k, w in weights.items()}


def _explanation_weights(
    members: list[Member], cfg: Config, sev: dict[str, Column], combined: Column
) -> list[tuple[str, float | Column]]:
    """Each member's weight in the ensemble's explanation (see :func:`score_wide`)."""
    if cfg.scoring.ensemble != "max":
        return list(_share(members, cfg).items())
    # The member(s) whose severity is the ensemble's, weight 1 split among ties.
    at_max = {m.id: sev[m.id] == combined for m in members}
    ties = sum((F.when(c, 1).otherwise(0) for c in at_max.values()), F.lit(0))
    return [(k, F.when(c, F.lit(1.0) / ties).otherwise(F.lit(0.0))) for k, c in at_max.items()]


def score_wide(features: DataFrame, members: list[Member], cfg: Config) -> DataFrame:
    """One row per event: a struct column per detector plus the ensemble's columns.

    The ensemble's explanation (alerted events only, ``severity >=
    scoring.alert_severity``; others get an empty array) combines the members'
    explanations with :func:`udfs.scoring.ensemble_explanation`, per feature the sum
    of the members' parts times their weight, on the severity scale:

    * ``weighted`` and ``mean``: the normalised ensemble weights, so the parts add up
      as the weighted severity does (to it less the weighted base severity, for the
      members' top ``scoring.top_features`` parts);
    * ``max``: the severity is one member's, so the explanation is that member's
      parts at weight 1 (the parts add up to the ensemble severity less that
      member's base); members tied at the maximum share the weight 1 equally, and
      the others add nothing. If that member did not flag the event (its threshold
      is above the alert severity), the explanation is empty: its parts were not
      computed and another member's would not add up to the ensemble's severity.

    A member that did not flag the event has no explanation and adds nothing.
    """
    df = features
    structs: list[Column] = []
    for m in members:
        df, col = m.attach(df)
        structs.append(col.alias(m.id))
    wide = df.select(*KEY_COLS, *structs)
    sev = {m.id: F.col(f"{m.id}.severity") for m in members}
    weights = _weights(members, cfg)
    if cfg.scoring.ensemble == "max":
        combined = F.greatest(*sev.values()) if len(sev) > 1 else sev[members[0].id]
    else:
        combined = sum((sev[k] * w for k, w in weights.items()), F.lit(0.0))
    share = _share(members, cfg)
    contributions = F.create_map(*[x for k, w in share.items() for x in (F.lit(k), sev[k] * w)])
    # Only alerted events are explained, as a member explains only its flagged rows.
    entry = SCORE_TYPE["explanation"].dataType
    explanation = F.when(
        combined >= cfg.scoring.alert_severity,
        ensemble_explanation(
            _explanation_weights(members, cfg, sev, combined), cfg.scoring.top_features
        ),
    ).otherwise(F.array().cast(entry))
    flagged_by = F.filter(
        F.array(*[F.when(F.col(f"{m.id}.is_anomaly"), F.lit(m.id)) for m in members]),
        lambda x: x.isNotNull(),
    )
    return wide.select(
        "*",
        combined.alias("_ens_severity"),
        contributions.alias("_contributions"),
        explanation.alias("_ens_explanation"),
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
            F.lit(ensemble_version(members)).alias("model_version"),
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
        F.lit(ensemble_version(members)).alias("model_version"),
        F.lit(ctx.run_id).alias("run_id"),
        now.alias("alerted_at"),
    )


def ensemble_version(members: list[Member]) -> str:
    """The ensemble's model version: its members' versions, in config order."""
    return ",".join(m.model.version for m in members)


# ---------------------------------------------------------------------------
# In process: a pandas batch of feature rows (the real-time endpoint)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectorScores:
    """One member's scores of a batch: the fields of :data:`udfs.scoring.SCORE_STRUCT`."""

    raw: np.ndarray
    severity: np.ndarray
    is_anomaly: np.ndarray
    explanation: list[Explanation]


@dataclass(frozen=True)
class BatchScores:
    """A pandas batch scored by the ensemble: what :func:`score_wide` adds, as arrays."""

    detectors: dict[str, DetectorScores]
    severity: np.ndarray
    is_alert: np.ndarray
    contributions: list[dict[str, float]]
    explanation: list[Explanation]
    flagged_by: list[list[str]]
    model_version: str


def _detector_scores(
    features: pd.DataFrame, bundle: ModelBundle, member: str, top_k: int
) -> DetectorScores:
    missing = [c for c in bundle.features if c not in features.columns]
    if missing:
        raise ModelError(f"detector {member}: feature columns {missing} missing from the batch")
    # As the pandas UDF reads its Arrow batch: doubles, null as NaN. A frame of exactly
    # the model's columns (the endpoint's) skips the column selection, which costs
    # more than scoring one row.
    frame = features if list(features.columns) == bundle.features else features[bundle.features]
    X = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    out = bundle.score_arrays(X, top_k=top_k)
    if len(out.raw) != len(features):
        raise ValueError(f"model returned {len(out.raw)} scores for {len(features)} rows")
    # score_column's slots: at most min(top_k, n_features), only for flagged rows,
    # each with the row's value as read (before the bundle's imputation).
    k = min(top_k, len(bundle.features), out.feature.shape[1])
    # One attribution method per batch, named as score_column names it.
    method = METHODS[out.method] if out.method >= 0 else None
    explanation: list[Explanation] = [[] for _ in range(len(features))]
    for row in np.flatnonzero(out.is_anomaly):
        explanation[row] = [
            (bundle.features[j], float(X[row, j]), float(out.contribution[row, s]), method)
            for s in range(k)
            if (j := int(out.feature[row, s])) >= 0
        ]
    return DetectorScores(out.raw, out.severity, np.asarray(out.is_anomaly, bool), explanation)


def combine_explanations(
    members: Sequence[tuple[Sequence[tuple[str, float, float, str | None]], float]], top_k: int
) -> Explanation:
    """:func:`udfs.scoring.ensemble_explanation` for one row, in Python: the same
    entries, the same float operations in the same order, the same ranking.

    ``members``: each member's explanation of the row with its weight, in member
    order. A member with weight 0 is left out; per feature, ``value`` is the first
    entry's, ``contribution`` is ``0.0 + c1 * w1 + c2 * w2 ...`` over the entries
    in order, ``method`` the sorted distinct methods joined by ``+``; features in
    first-appearance order, then stably sorted by descending ``|contribution|``
    (Spark's comparator sort is a stable TimSort too), the first ``top_k`` kept.
    """
    entries = [
        (f, v, c * w, method)
        for explanation, w in members
        if w != 0
        for f, v, c, method in explanation
    ]
    merged: Explanation = []
    for name in dict.fromkeys(e[0] for e in entries):
        mine = [e for e in entries if e[0] == name]
        total = 0.0
        for e in mine:
            total = total + e[2]
        # array_join skips nulls (a method is null only in a batch nothing flagged).
        methods = sorted({e[3] for e in mine if e[3] is not None})
        merged.append((name, mine[0][1], total, "+".join(methods)))
    return sorted(merged, key=lambda e: -abs(e[2]))[:top_k]


def score_pandas(features: pd.DataFrame, members: list[Member], cfg: Config) -> BatchScores:
    """:func:`score_wide` for an in-process batch: same members, same numbers."""
    if not members:
        raise ModelError("no detectors to score with (scoring.detectors is empty)")
    top_k = cfg.scoring.top_features
    per: dict[str, DetectorScores] = {}
    for m in members:
        if m.bundle is None:
            raise ModelError(
                f"detector {m.id} runs in the JVM (engine synapseml): it cannot score in process"
            )
        per[m.id] = _detector_scores(features, m.bundle, m.id, top_k)
    n = len(features)
    if cfg.scoring.ensemble == "max":
        combined = np.max(np.vstack([per[m.id].severity for m in members]), axis=0)
    else:
        # Same terms in the same order as score_wide's sum, so the doubles agree.
        combined = np.zeros(n)
        for k, w in _weights(members, cfg).items():
            combined = combined + per[k].severity * w
    share = _share(members, cfg)
    contributions = [{k: float(per[k].severity[i] * w) for k, w in share.items()} for i in range(n)]
    is_alert = combined >= cfg.scoring.alert_severity
    explanation: list[Explanation] = [[] for _ in range(n)]
    for i in np.flatnonzero(is_alert):
        if cfg.scoring.ensemble == "max":
            # score_wide's _explanation_weights: weight 1 split among the member(s)
            # at the maximum severity, the same comparison and division.
            at_max = {m.id: bool(per[m.id].severity[i] == combined[i]) for m in members}
            ties = sum(1 for c in at_max.values() if c)
            weights = [(k, 1.0 / ties if c else 0.0) for k, c in at_max.items()]
        else:
            weights = list(share.items())
        explanation[i] = combine_explanations(
            [(per[k].explanation[i], w) for k, w in weights], top_k
        )
    flagged = [[m.id for m in members if per[m.id].is_anomaly[i]] for i in range(n)]
    return BatchScores(
        detectors=per,
        severity=combined,
        is_alert=is_alert,
        contributions=contributions,
        explanation=explanation,
        flagged_by=flagged,
        model_version=ensemble_version(members),
    )


def wide_frame(
    spark: SparkSession, keys: pd.DataFrame, scores: BatchScores, members: list[Member]
) -> DataFrame:
    """``keys`` (:data:`KEY_COLS`) and ``scores`` as :func:`score_wide`'s output, for
    :func:`to_scores` / :func:`to_alerts`."""
    entry = SCORE_TYPE["explanation"].dataType
    schema = StructType(
        [
            StructField("event_id", StringType()),
            StructField("entity_id", StringType()),
            StructField("event_ts", TimestampType()),
            StructField(io.DATE_COL, DateType()),
            *[StructField(m.id, SCORE_TYPE) for m in members],
            StructField("_ens_severity", DoubleType()),
            StructField("_contributions", MapType(StringType(), DoubleType())),
            StructField("_ens_explanation", entry),
            StructField("_flagged_by", ArrayType(StringType())),
        ]
    )
    rows: list[tuple[Any, ...]] = []
    for i, k in enumerate(keys[KEY_COLS].itertuples(index=False)):
        structs = [
            (
                float(d.raw[i]),
                float(d.severity[i]),
                bool(d.is_anomaly[i]),
                [list(e) for e in d.explanation[i]],
            )
            for d in (scores.detectors[m.id] for m in members)
        ]
        rows.append(
            (
                str(k[0]),
                str(k[1]),
                pd.Timestamp(k[2]).to_pydatetime(),
                pd.Timestamp(k[3]).date(),
                *structs,
                float(scores.severity[i]),
                scores.contributions[i],
                [list(e) for e in scores.explanation[i]],
                scores.flagged_by[i],
            )
        )
    return spark.createDataFrame(rows, schema)
