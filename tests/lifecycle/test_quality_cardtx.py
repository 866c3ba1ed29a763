"""Quality on the real card data (Fraud Detection Handbook simulator), handbook protocol.

7 days train (2018-05-11..17), 7 days delay, 7 days test (2018-05-25..31), on the
handbook's 15 features (``cardtx_features``). Published figures (same simulator,
same protocol): Isolation Forest ROC-AUC 0.808 / AP 0.164, autoencoder 0.836 /
0.180, supervised random forest AP 0.658. Run with ``pytest -m quality -s`` to see
the numbers.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from lakehound.lifecycle import handbook, supervised
from tests.conftest import SHARED_DATA, require_shared
from udfs.bundle import ModelBundle
from udfs.calibration import Threshold

pytestmark = [pytest.mark.quality, pytest.mark.slow]

DATA = SHARED_DATA / "transactions" / "fraud_sim_2018-04_2018-05.parquet"


@pytest.fixture(scope="module")
def handbook_split(spark: SparkSession) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    require_shared(DATA)
    train, test, feats = handbook.load_split(spark, DATA, dt.date(2018, 5, 11))
    assert len(feats) == 15
    return train, test, feats


def test_unsupervised_beats_published_iforest_and_autoencoder(
    handbook_split: tuple[pd.DataFrame, pd.DataFrame, list[str]],
) -> None:
    train, test, feats = handbook_split
    # LakeHound's default Isolation Forest; no label is used.
    bundle = ModelBundle.fit(
        "isolation_forest", {"n_estimators": 100, "max_samples": 256, "random_state": 0},
        feats, train[feats].to_numpy(np.float64), Threshold("contamination", 0.01),
    )  # fmt: skip
    got = handbook.scores(test, bundle.score(test[feats].to_numpy(np.float64)).raw)
    print(f"\nunsupervised isolation_forest: {got}")
    assert got["roc_auc"] > 0.836 and got["average_precision"] > 0.180


def test_with_feedback_labels_approaches_random_forest(
    handbook_split: tuple[pd.DataFrame, pd.DataFrame, list[str]],
) -> None:
    train, test, feats = handbook_split
    # The training week's labels stand for the analysts' feedback.
    bundle = supervised.fit_bundle(
        feats, train[feats].to_numpy(np.float64), train["y"].to_numpy(), {},
        Threshold("contamination", 0.01),
    )  # fmt: skip
    got = handbook.scores(test, bundle.score(test[feats].to_numpy(np.float64)).raw)
    print(f"\nsupervised member on feedback labels: {got}")
    assert got["average_precision"] > 0.6 and got["roc_auc"] > 0.85
