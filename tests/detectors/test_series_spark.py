"""Per-series scoring on Spark (applyInPandas) equals the detector called directly in numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from udfs.calibration import Threshold
from udfs.detectors.registry import create
from udfs.series import probation_rows, score_by_group


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    parts = []
    for sid, (n, level) in {"a": (200, 10.0), "b": (160, -3.0), "c": (240, 50.0)}.items():
        t = np.arange(n)
        v = level + np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.2, n)
        v[n - 20] += 6.0  # one spike per series, after the training stretch
        parts.append(pd.DataFrame({"series": sid, "ts": t, "value": v}))
    # Shuffled: the glue must restore time order itself.
    return pd.concat(parts).sample(frac=1.0, random_state=1).reset_index(drop=True)


def test_probation_rows_follows_nab() -> None:
    assert probation_rows(1000) == 150
    assert probation_rows(10_000) == 750
    assert probation_rows(7) == 1


@pytest.mark.parametrize(
    ("detector", "params"),
    [
        ("ewma", {"alpha": 0.4}),
        ("holt_winters", {"period": 24}),
        ("robust_zscore", {}),
        ("lstm_quantile", {"context": 24, "epochs": 10}),
        # Without the spatial rule (the noise's new extremes would tie with the spike at
        # 1) and without averaging (the EWMA's residual after the spike is large too).
        (
            "likelihood",
            {
                "base": "ewma",
                "base_params": {"alpha": 0.4},
                "short": 1,
                "long": 100,
                "spatial_tolerance": None,
            },
        ),
        ("seasonal_zscore", {"period": 24}),
    ],
)
def test_spark_matches_numpy_per_series(
    spark: SparkSession, detector: str, params: dict[str, float]
) -> None:
    pdf = _frame()
    thr = Threshold("quantile", 0.99)
    got = (
        score_by_group(
            spark.createDataFrame(pdf),
            "series",
            "ts",
            ["value"],
            detector,
            params,
            thr,
            train_fraction=0.3,
        )
        .toPandas()
        .sort_values(["series", "ts"])
        .reset_index(drop=True)
    )
    assert len(got) == len(pdf)
    for sid, g in pdf.groupby("series"):
        g = g.sort_values("ts")
        x = g["value"].to_numpy().reshape(-1, 1)
        n_train = max(int(np.floor(0.3 * len(g))), create(detector, **params).min_rows())
        det = create(detector, **params).fit(x[:n_train])
        expected = det.score(x)
        cut = np.quantile(expected[:n_train], 0.99, method="higher")
        mine = got[got["series"] == sid]
        np.testing.assert_array_equal(mine["ts"].to_numpy(), g["ts"].to_numpy())
        np.testing.assert_allclose(mine["raw_score"].to_numpy(), expected, rtol=1e-12)
        np.testing.assert_array_equal(mine["is_anomaly"].to_numpy(), expected >= cut)
        # The planted spike is the series' top score and flagged.
        spike = len(g) - 20
        assert int(np.argmax(mine["raw_score"].to_numpy())) == spike
        assert bool(mine["is_anomaly"].to_numpy()[spike])
        # Beyond the training range: in the fitted tail, ranked first, below 100.
        sev = mine["severity"].to_numpy()
        assert 99.0 < sev[spike] < 100.0 and sev[spike] == sev.max()


def test_bad_column_and_params_fail_on_driver(spark: SparkSession) -> None:
    df = spark.createDataFrame(_frame())
    with pytest.raises(ValueError, match="not in"):
        score_by_group(df, "series", "ts", ["nope"], "ewma")
    with pytest.raises(ValueError, match="alpha"):
        score_by_group(df, "series", "ts", ["value"], "ewma", {"alpha": 2.0})
