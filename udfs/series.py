"""Spark glue for per-series / per-entity detectors: one model per group, via applyInPandas.

Each group (a NAB series, a machine, a host, a card) is sorted by its order
column, a fresh detector is fitted on its first training rows (the probation
stretch) and scores every row of the group; severity and threshold are the same
calibration as the shared models (:class:`udfs.calibration.Calibrator`,
:class:`udfs.calibration.Threshold`) fitted on that group's training scores.
Groups run in parallel across Spark tasks; nothing is shipped but the params.

The numpy core, :func:`fit_score_group`, is what the Spark glue calls per group,
so tests and notebooks can call it directly on a pandas frame.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from udfs.calibration import Calibrator, Threshold
from udfs.detectors.registry import create, get


def probation_rows(n: int, fraction: float = 0.15, cap: int = 750) -> int:
    """NAB's probation period: the first 15% of a series, at most 750 rows."""
    return int(min(math.floor(fraction * n), cap))


def fit_score_group(
    values: np.ndarray,
    detector: str,
    params: dict[str, Any],
    threshold: Threshold,
    train_rows: int,
) -> pd.DataFrame:
    """Fit ``detector`` on ``values[:train_rows]`` and score all of ``values`` (time order).

    Returns one row per input row: raw_score, severity (0-100, calibrated on the
    training rows' scores), is_anomaly (raw >= the fitted threshold), threshold.
    """
    X = np.asarray(values, dtype=np.float64)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    det = create(detector, **params)
    train_rows = max(int(train_rows), det.min_rows())
    if X.shape[0] < train_rows:
        raise ValueError(f"series has {X.shape[0]} rows, {detector} needs {train_rows} to fit")
    det.fit(X[:train_rows])
    raw = det.score(X)
    train_scores = raw[:train_rows]
    cut = threshold.fit(train_scores)
    return pd.DataFrame(
        {
            "raw_score": raw,
            "severity": Calibrator().fit(train_scores).severity(raw),
            "is_anomaly": raw >= cut,
            "threshold": np.full(len(raw), cut),
        }
    )


def score_by_group(
    df: DataFrame,
    group_col: str,
    order_col: str,
    value_cols: list[str],
    detector: str,
    params: dict[str, Any] | None = None,
    threshold: Threshold | None = None,
    train_fraction: float = 0.15,
    max_train_rows: int = 750,
) -> DataFrame:
    """One detector per ``group_col`` value, fitted on that group's first rows by ``order_col``.

    Returns ``group_col, order_col, raw_score, severity, is_anomaly, threshold`` with
    one row per input row. The training stretch of a group of ``n`` rows is
    ``min(floor(train_fraction * n), max_train_rows)`` rows (NAB's probation with the
    defaults), but never less than the detector needs. Works for tabular detectors
    too (one model per entity); there the order only decides which rows train.
    """
    params = dict(params or {})
    thr = threshold or Threshold("contamination", 0.01)
    create(detector, **params)  # bad names or params fail here, on the driver
    missing = [c for c in [group_col, order_col, *value_cols] if c not in df.columns]
    if missing:
        raise ValueError(f"score_by_group: columns {missing} not in {df.columns}")
    fields = df.select(group_col, order_col).schema.fields
    schema = T.StructType(
        [
            *fields,
            T.StructField("raw_score", T.DoubleType()),
            T.StructField("severity", T.DoubleType()),
            T.StructField("is_anomaly", T.BooleanType()),
            T.StructField("threshold", T.DoubleType()),
        ]
    )
    sequential = get(detector).sequential

    def _one(pdf: pd.DataFrame) -> pd.DataFrame:
        pdf = pdf.sort_values(order_col, kind="stable")
        n = len(pdf)
        X = pdf[value_cols].to_numpy(dtype=np.float64, na_value=np.nan)
        if not np.isfinite(X).all():
            # Series: carry the last observation forward (then back) so time order
            # holds; entities: the group's median, as the shared bundles do.
            frame = pd.DataFrame(X)
            if sequential:
                frame = frame.ffill().bfill()
            X = frame.fillna(frame.median()).fillna(0.0).to_numpy()
        out = fit_score_group(
            X, detector, params, thr, probation_rows(n, train_fraction, max_train_rows)
        )
        out.insert(0, order_col, pdf[order_col].to_numpy())
        out.insert(0, group_col, pdf[group_col].to_numpy())
        return out

    return (
        df.select(group_col, order_col, *[df[c].cast("double").alias(c) for c in value_cols])
        .groupBy(group_col)
        .applyInPandas(_one, schema)
    )
