"""SynapseML's Isolation Forest as a JVM-native scoring engine: no Python round trip.

Training, scoring, calibration and explanation all stay in the JVM:

* a Spark ML pipeline ``Imputer(median) -> VectorAssembler -> IsolationForest``
  (SynapseML wraps LinkedIn's Spark isolation forest);
* severity 0-100 is the empirical CDF of the training scores, kept as 101
  quantiles and interpolated with Spark SQL array functions;
* the explanation is each feature's robust z (|x - median| / MAD) against the
  training window, top-k by native ``sort_array``; a tree-path attribution would
  need the JVM model's internals, which SynapseML does not expose.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import Imputer, VectorAssembler
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehound.config import ThresholdSettings

_MAD_FLOOR = 1e-9
# randomSeed must be > 0: LinkedIn's forest (inside SynapseML 1.1.3) validates it with
# ParamValidators.gt(0) and fails fit with IllegalArgumentException on 0.
_DEFAULTS: dict[str, Any] = {"numEstimators": 100, "maxSamples": 256.0, "randomSeed": 1}


@dataclass(frozen=True)
class JvmModelMeta:
    """What scoring needs besides the Spark ML pipeline; stored as meta.json."""

    member: str
    features: list[str]
    quantiles: list[float]
    threshold: float
    medians: list[float]
    mads: list[float]


def _cols(member: str) -> dict[str, str]:
    return {"vec": f"_{member}_vec", "score": f"_{member}_score", "pred": f"_{member}_pred"}


def _threshold(train_scores: DataFrame, col: str, policy: ThresholdSettings) -> float:
    if policy.policy == "static":
        return float(policy.value)
    q = 1.0 - policy.value if policy.policy == "contamination" else policy.value
    return float(train_scores.approxQuantile(col, [q], 0.0001)[0])


def fit(
    train: DataFrame,
    member: str,
    features: list[str],
    params: dict[str, Any],
    threshold: ThresholdSettings,
) -> tuple[PipelineModel, JvmModelMeta]:
    from synapse.ml.isolationforest import IsolationForest

    c = _cols(member)
    imputed = [f"_{member}_imp_{f}" for f in features]
    forest = IsolationForest(featuresCol=c["vec"], scoreCol=c["score"], predictionCol=c["pred"])
    forest.setParams(**{**_DEFAULTS, **params})
    pipeline = Pipeline(
        stages=[
            Imputer(inputCols=features, outputCols=imputed, strategy="median"),
            VectorAssembler(inputCols=imputed, outputCol=c["vec"], handleInvalid="keep"),
            forest,
        ]
    )
    data = train.select(*[F.col(f).cast("double") for f in features]).cache()
    try:
        model = pipeline.fit(data)
        scores = model.transform(data).select(c["score"])
        quantiles = scores.approxQuantile(c["score"], [i / 100 for i in range(101)], 0.0001)
        cut = _threshold(scores, c["score"], threshold)
        medians = data.approxQuantile(features, [0.5], 0.0001)
        med = [m[0] if m else 0.0 for m in medians]
        dev = data.select(
            *[F.abs(F.col(f) - F.lit(m)).alias(f) for f, m in zip(features, med, strict=True)]
        )
        mads = [max((m[0] if m else 0.0) * 1.4826, _MAD_FLOOR) for m in
                dev.approxQuantile(features, [0.5], 0.0001)]  # fmt: skip
    finally:
        data.unpersist()
    return model, JvmModelMeta(member, features, quantiles, cut, med, mads)


def save(model: PipelineModel, meta: JvmModelMeta, root: Path) -> None:
    model.write().overwrite().save(str(root / "pipeline"))
    (root / "meta.json").write_text(json.dumps(meta.__dict__), encoding="utf-8")


def load(root: Path) -> tuple[PipelineModel, JvmModelMeta]:
    meta = JvmModelMeta(**json.loads((root / "meta.json").read_text(encoding="utf-8")))
    return PipelineModel.load(str(root / "pipeline")), meta


def severity(score: Column, quantiles: list[float]) -> Column:
    """100 x empirical CDF of the training scores, linearly interpolated, in Spark SQL."""
    q = F.array(*[F.lit(float(v)) for v in quantiles])
    k = F.size(F.filter(q, lambda x: x <= score))  # quantiles at or below the score
    lo, hi = F.element_at(q, F.greatest(k, F.lit(1))), F.element_at(q, F.least(k + 1, F.lit(101)))
    frac = F.when(hi > lo, (score - lo) / (hi - lo)).otherwise(F.lit(0.0))
    return (
        F.when(k <= 0, F.lit(0.0))
        .when(k >= len(quantiles), F.lit(100.0))
        .otherwise((k - 1 + frac) * (100.0 / (len(quantiles) - 1)))
    )


def explanation(meta: JvmModelMeta, top_k: int) -> Column:
    """Top-k features by robust z, as array<struct<feature, value, contribution, method>>
    (method ``robust_z``: the contribution is the |z| itself, not severity points)."""
    items = [
        F.struct(
            (F.abs(F.col(f) - F.lit(m)) / F.lit(s)).alias("contribution"),
            F.lit(f).alias("feature"),
            F.col(f).cast("double").alias("value"),
        )
        for f, m, s in zip(meta.features, meta.medians, meta.mads, strict=True)
    ]
    ranked = F.slice(F.sort_array(F.array(*items), asc=False), 1, top_k)
    return F.transform(
        ranked,
        lambda x: F.struct(
            x["feature"].alias("feature"),
            x["value"].alias("value"),
            x["contribution"].alias("contribution"),
            F.lit("robust_z").alias("method"),
        ),
    )


def score_struct(
    df: DataFrame, model: PipelineModel, meta: JvmModelMeta, top_k: int
) -> tuple[DataFrame, Column]:
    """``df`` with the forest's score attached, and the member's score struct column."""
    c = _cols(meta.member)
    scored = model.transform(df)
    raw = F.col(c["score"])
    flagged = raw >= F.lit(meta.threshold)
    struct = F.struct(
        raw.alias("raw_score"),
        severity(raw, meta.quantiles).alias("severity"),
        flagged.alias("is_anomaly"),
        F.when(flagged, explanation(meta, top_k))
        .otherwise(F.array().cast(
            "array<struct<feature:string,value:double,contribution:double,method:string>>"
        ))
        .alias("explanation"),
    )  # fmt: skip
    return scored, struct
