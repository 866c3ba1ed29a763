"""Spark glue: score a DataFrame with a :class:`ModelBundle` in an iterator pandas UDF.

As in pyspark's ``predict_batch_udf``: the model is deserialised once per Python
worker (not per Arrow batch), the predict function works on numpy arrays, and
the wrapper checks that it returns exactly one result per input row. The bundle
travels as checksummed bytes in a broadcast, so executors need no access to the
driver's filesystem; a worker refuses bytes whose SHA-256 differs from the one
the registry recorded.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    StringType,
    StructField,
    StructType,
)

from udfs.bundle import METHODS, ModelBundle

SCORE_STRUCT = (
    "raw_score double, severity double, is_anomaly boolean, "
    "explanation array<struct<feature:string,value:double,contribution:double,method:string>>"
)
SCORE_TYPE = StructType(
    [
        StructField("raw_score", DoubleType()),
        StructField("severity", DoubleType()),
        StructField("is_anomaly", BooleanType()),
        StructField(
            "explanation",
            ArrayType(
                StructType(
                    [
                        StructField("feature", StringType()),
                        StructField("value", DoubleType()),
                        StructField("contribution", DoubleType()),
                        StructField("method", StringType()),
                    ]
                )
            ),
        ),
    ]
)


class ArtifactChecksumError(RuntimeError):
    """Model bytes do not match the checksum the registry recorded."""


@functools.lru_cache(maxsize=8)
def _load(sha256: str, payload: bytes) -> ModelBundle:
    digest = hashlib.sha256(payload).hexdigest()
    if digest != sha256:
        raise ArtifactChecksumError(f"model bytes have sha256 {digest}, registry says {sha256}")
    bundle = pickle.loads(payload)
    if not isinstance(bundle, ModelBundle):
        raise ArtifactChecksumError(f"artifact {sha256} is not a ModelBundle")
    return bundle


def score_column(
    df: DataFrame, payload: bytes, sha256: str, features: list[str], top_k: int
) -> Column:
    """A struct column (raw_score, severity, is_anomaly, explanation) for every row of df.

    The Python worker returns flat numeric columns only (the explanation as ``k``
    parallel slots of feature index / contribution, index -1 where a row has none,
    and the attribution method's index in :data:`udfs.bundle.METHODS`),
    which Arrow takes over without a Python object per row; the JVM then adds the
    feature names, the method's name and the row's values (as read, before the
    bundle's imputation of missing values) and builds the ``explanation`` array of structs from the slots.
    The column's type is exactly :data:`SCORE_STRUCT`.
    """
    bc = df.sparkSession.sparkContext.broadcast(payload)
    k = _width(top_k, len(features))
    flat = "raw_score double, severity double, is_anomaly boolean, method int" + "".join(
        f", e{i}_feature int, e{i}_contribution double" for i in range(k)
    )

    @pandas_udf(flat)  # type: ignore[call-overload]
    def _score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        bundle = _load(sha256, bc.value)
        if list(bundle.features) != list(features):
            raise ValueError(f"model expects features {bundle.features}, got {features}")
        for batch in batches:
            X = batch.to_numpy(dtype=np.float64, na_value=np.nan)
            out = bundle.score_arrays(X, top_k=top_k)
            if len(out.raw) != len(batch):
                raise ValueError(f"model returned {len(out.raw)} scores for {len(batch)} rows")
            cols: dict[str, Any] = {
                "raw_score": out.raw,
                "severity": out.severity,
                "is_anomaly": out.is_anomaly,
                # One attribution method per batch (an int, named by the JVM).
                "method": np.full(len(batch), out.method, dtype=np.int32),
            }
            for i in range(k):
                # Feature indexes, not names: strings would cost a Python object per
                # row on the way back to the JVM (-1: no explanation in this slot).
                have = i < out.feature.shape[1]
                idx = out.feature[:, i] if have else np.full(len(batch), -1)
                cols[f"e{i}_feature"] = idx.astype(np.int32)
                cols[f"e{i}_contribution"] = (
                    out.contribution[:, i] if have else np.full(len(batch), np.nan)
                )
            yield pd.DataFrame(cols)

    inputs = [F.col(c).cast("double") for c in features]
    s = _score(F.struct(*inputs))
    names, values = F.array(*[F.lit(c) for c in features]), F.array(*inputs)
    # element_at(.., 0) raises: a batch without a flagged row ships -1.
    method = F.when(
        s["method"] >= 0, F.element_at(F.array(*[F.lit(m) for m in METHODS]), s["method"] + 1)
    )

    def pick(arr: Column, i: int) -> Column:
        # element_at is 1-based; index -1 (no explanation in the slot) gives null.
        idx = s[f"e{i}_feature"]
        return F.when(idx >= 0, F.element_at(arr, idx + 1))

    slots = [
        F.struct(
            pick(names, i).alias("feature"),
            # The row's own value, read here rather than shipped back from Python.
            pick(values, i).alias("value"),
            s[f"e{i}_contribution"].alias("contribution"),
            method.alias("method"),
        )
        for i in range(k)
    ]
    # Only flagged rows carry an explanation (the bundle explains nothing else), so
    # the JVM builds the array for them alone; the casts only widen nullability (the
    # UDF's own output is nullable) and are removed by the optimizer.
    entry = SCORE_TYPE["explanation"].dataType
    flagged = s["is_anomaly"]
    explanation = F.when(
        flagged,
        F.filter(F.array(*slots), lambda e: e["feature"].isNotNull()).cast(entry)
        if slots
        else F.array().cast(entry),
    ).when(~flagged, F.array().cast(entry))
    scored = F.struct(
        s["raw_score"].alias("raw_score"),
        s["severity"].alias("severity"),
        flagged.alias("is_anomaly"),
        explanation.alias("explanation"),
    )
    # when(...) without otherwise is nullable, as the UDF's output column was.
    return F.when(s.isNotNull(), scored)


def ensemble_explanation(members: Sequence[tuple[str, float | Column]], top_k: int) -> Column:
    """The ensemble's explanation from its members' score structs (columns named by
    member id): per feature, the sum of the members' contributions times their
    ensemble weights, strongest ``top_k`` first. Contributions are severity points
    (:mod:`udfs.explain`), so the parts of a weighted-mean ensemble add up as its
    severity does; a member that did not flag the row (no explanation) adds nothing.

    A weight is a number or a double column (a per-row weight, e.g. a ``max``
    ensemble's choice of member); a member whose weight is 0 (or null) on a row is
    left out there rather than listing its features at 0 points.

    Per feature: ``value`` is the first member's (in ``members`` order; every member
    reads the same row), ``contribution`` the sum over the entries in member order
    then each member's explanation order, starting from 0.0, and ``method`` the
    distinct methods of the members that contributed, sorted and joined by ``+``
    (``max_z_shapley+tree_shap``; one name when they agree). Features are listed in
    their first appearance's order, then stably sorted by descending
    ``|contribution|`` (Spark's ``array_sort`` with a comparator is a TimSort), so
    ties keep that order. :func:`lakehound.scoring.core.combine_explanations` is the
    same arithmetic in Python, for the in-process path.
    """
    entry = SCORE_TYPE["explanation"].dataType
    empty = F.array().cast(entry)
    weighted = []
    for m, w in members:
        explanation = F.col(f"{m}.explanation")
        if isinstance(w, Column):
            explanation = F.when(w != 0, explanation)
        elif w == 0:
            continue
        weighted.append(F.transform(F.coalesce(explanation, empty), _times(w)))
    if not weighted:
        return empty
    entries = F.concat(*weighted) if len(weighted) > 1 else weighted[0]

    def merge(name: Column) -> Column:
        mine = F.filter(entries, lambda e: e["feature"] == name)
        return F.struct(
            name.alias("feature"),
            mine[0]["value"].alias("value"),
            F.aggregate(mine, F.lit(0.0), lambda acc, e: acc + e["contribution"]).alias(
                "contribution"
            ),
            F.array_join(
                F.array_sort(F.array_distinct(F.transform(mine, lambda e: e["method"]))), "+"
            ).alias("method"),
        )

    merged = F.transform(F.array_distinct(F.transform(entries, lambda e: e["feature"])), merge)
    ranked = F.array_sort(
        merged,
        lambda a, b: F.signum(F.abs(b["contribution"]) - F.abs(a["contribution"])).cast("int"),
    )
    return F.slice(ranked, 1, top_k).cast(entry)


def _times(weight: float | Column) -> Callable[[Column], Column]:
    factor = weight if isinstance(weight, Column) else F.lit(float(weight))

    def scale(e: Column) -> Column:
        return F.struct(
            e["feature"].alias("feature"),
            e["value"].alias("value"),
            (e["contribution"] * factor).alias("contribution"),
            e["method"].alias("method"),
        )

    return scale


def _width(top_k: int, n_features: int) -> int:
    """Explanation slots per row: as many as ``top_k_by_abs`` can return."""
    return len(range(n_features)[: min(top_k, n_features)])
