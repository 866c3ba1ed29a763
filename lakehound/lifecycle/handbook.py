"""The Fraud Detection Handbook's evaluation protocol (Le Borgne et al., ch. 3.4-4).

7 days of training transactions, 7 days of delay (labels not yet known), 7 test
days. Cards already known to be compromised (a fraud in the training week, or
one of the delay days as they pass) are dropped from each test day, as in the
handbook's ``get_train_test_set``. Metrics: ROC-AUC, average precision and the
daily card precision@100.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehound.features.transactions import cardtx_features
from lakehound.lifecycle import metrics


def split(
    df: pd.DataFrame, train_start: dt.date, train_days: int = 7, delay_days: int = 7,
    test_days: int = 7,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """(train, test) rows of ``df`` (columns ``day`` (date), ``card``, ``y``)."""
    day = lambda i: train_start + dt.timedelta(days=i)  # noqa: E731
    train = df[(df["day"] >= train_start) & (df["day"] < day(train_days))]
    known = set(train.loc[train["y"] == 1, "card"])
    parts = []
    for i in range(test_days):
        delay_day = df[df["day"] == day(train_days + i - 1)]
        known |= set(delay_day.loc[delay_day["y"] == 1, "card"])
        test_day = df[df["day"] == day(train_days + delay_days + i)]
        parts.append(test_day[~test_day["card"].isin(known)])
    return train, pd.concat(parts)


def load_split(
    spark: SparkSession, path: Path, train_start: dt.date, delay_days: int = 7
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(train, test, feature names) of the handbook's card parquet at ``path``.

    The 15 handbook features (``cardtx_features``, terminal risk seeing labels only
    through the delay) are computed in Spark over all the data, for their 30-day
    windows; only the protocol's 21 days reach pandas, which is all :func:`split` reads.
    """
    raw = spark.read.parquet(str(path)).withColumn(
        "TX_DATETIME", F.col("TX_DATETIME").cast("timestamp")
    )
    labels = raw.select(
        F.col("TRANSACTION_ID").cast("string").alias("event_id"),
        F.col("TX_FRAUD").cast("int").alias("y"),
    )
    last = train_start + dt.timedelta(days=7 + delay_days + 7 - 1)
    pdf = (
        cardtx_features(raw, None, delay_days)
        .where(F.col("event_date").between(train_start, last))
        .join(labels, "event_id")
        .toPandas()
    )
    pdf["day"] = pd.to_datetime(pdf["event_date"]).dt.date
    pdf["card"] = pdf["entity_id"]
    feats = [c for c in pdf.columns if c.startswith(("tx_", "card_", "terminal_"))]
    train, test = split(pdf, train_start, delay_days=delay_days)
    return train, test, feats


def scores(test: pd.DataFrame, s: np.ndarray, k: int = 100) -> dict[str, float]:
    y = test["y"].to_numpy()
    return {
        "roc_auc": metrics.roc_auc(y, s),
        "average_precision": metrics.average_precision(y, s),
        f"card_precision_at_{k}": metrics.card_precision_at_k(
            test["day"].to_numpy(), test["card"].to_numpy(), y, s, k
        ),
    }
