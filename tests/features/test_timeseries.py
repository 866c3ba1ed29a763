"""Series regularisation (gap/fill policy, gap flag), rolling stats against pandas,
point-in-time correctness, NAB and the sensors generator."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehound.config import GenerateSettings, SensorGenerateSettings
from lakehound.features.registry import SERIES_SPECS, feature_names
from lakehound.features.timeseries import (
    SeriesSpec,
    label_windows,
    nab_windows,
    read_nab,
    regularise,
    series_features,
)
from lakehound.generators import sensors as gen
from tests.conftest import SHARED_DATA, require_shared

NAB = SHARED_DATA / "nab"
T0 = dt.datetime(2024, 1, 1, 0, 0, 0)
M = dt.timedelta(minutes=1)
SCHEMA = "series_id string, event_ts timestamp, value double"


def test_regularise_gap_flag_and_fill_policies(spark: SparkSession) -> None:
    pts = spark.createDataFrame(
        [("s", T0 + 1 * M, 1.0), ("s", T0 + 4 * M, 3.0), ("s", T0 + 22 * M, 5.0)], SCHEMA
    )
    spec = SeriesSpec(step="5 minutes", windows=(2,), max_fill_steps=1, fill="ffill")
    got = {
        r["_t"]: r
        for r in regularise(pts, spec).collect()  # _t = step end, epoch seconds
    }
    t0 = int(T0.replace(tzinfo=dt.UTC).timestamp())
    ends = sorted(got)
    assert ends == [t0 + k * 300 for k in (1, 2, 3, 4, 5)]  # 00:05 .. 00:25
    first = got[t0 + 300]
    assert (first["n_points"], first["is_gap"], first["value"]) == (2.0, 0.0, 2.0)  # mean
    assert got[t0 + 600]["is_gap"] == 1.0 and got[t0 + 600]["value"] == 2.0  # ffill 1 step
    assert got[t0 + 900]["value"] is None  # beyond max_fill_steps: stays missing
    assert got[t0 + 1200]["steps_since_obs"] == 3.0
    assert got[t0 + 1500]["value"] == 5.0 and got[t0 + 1500]["steps_since_obs"] == 0.0
    zero = {
        r["_t"]: r["value"]
        for r in regularise(pts, SeriesSpec(step="5 minutes", fill="zero")).collect()
    }
    assert zero[t0 + 900] == 0.0
    none = {
        r["_t"]: r["value"]
        for r in regularise(pts, SeriesSpec(step="5 minutes", fill="none")).collect()
    }
    assert none[t0 + 600] is None


def test_rolling_lag_diff_match_pandas(spark: SparkSession) -> None:
    rng = np.random.default_rng(3)
    n = 200
    values = rng.normal(10, 2, n)
    pts = pd.DataFrame(
        {"series_id": "s", "event_ts": [T0 + (k + 1) * M for k in range(n)], "value": values}
    )
    spec = SeriesSpec(step="1 minute", windows=(10,), lags=(1, 3), min_periods=3)
    got = series_features(spark.createDataFrame(pts, SCHEMA), spec).orderBy("event_ts").toPandas()
    s = pd.Series(values)
    past = s.shift(1).rolling(10, min_periods=3)
    mean, std, lo, hi = past.mean(), past.std(), past.min(), past.max()
    # No gaps: every raw point is its own 1-minute step ending at its timestamp.
    assert got["is_gap"].sum() == 0 and len(got) == n
    ok = mean.notna()
    np.testing.assert_allclose(got.loc[ok, "value_mean_10m"], mean[ok], rtol=1e-9)
    np.testing.assert_allclose(got.loc[ok, "value_std_10m"], std[ok], rtol=1e-9)
    np.testing.assert_allclose(got.loc[ok, "value_min_10m"], lo[ok], rtol=1e-9)
    np.testing.assert_allclose(got.loc[ok, "value_max_10m"], hi[ok], rtol=1e-9)
    np.testing.assert_allclose(got.loc[ok, "value_z_10m"], ((s - mean) / std)[ok], rtol=1e-9)
    np.testing.assert_allclose(got["value_diff_3m"][3:], (s - s.shift(3))[3:], rtol=1e-9)
    # New series policy: fewer than min_periods past points -> own value, std 0, z 0.
    assert got.loc[0, "value_mean_10m"] == values[0] and got.loc[2, "value_z_10m"] == 0.0
    assert got.loc[0, "value_lag_1m"] == values[0] and got.loc[0, "value_diff_1m"] == 0.0
    assert list(got["hour_of_day"][:2]) == [0, 0] and got.loc[0, "day_of_week"] == 0  # Monday


def test_series_point_in_time(spark: SparkSession) -> None:
    rng = np.random.default_rng(5)
    rows = [("a", T0 + k * M * 3, float(v)) for k, v in enumerate(rng.normal(0, 1, 60))]
    rows += [("b", T0 + k * M * 7, float(k)) for k in range(20)]
    spec = SERIES_SPECS["nab"]
    before = series_features(spark.createDataFrame(rows, SCHEMA), spec)
    later = [("a", T0 + 200 * M * 3, 99.0), ("b", T0 + 19 * M * 7 + M, -50.0), ("c", T0, 1.0)]
    after = series_features(spark.createDataFrame(rows + later, SCHEMA), spec)
    cut = T0 + 19 * 7 * M  # the last step end of the base input for b
    assertDataFrameEqual(
        after.where((F.col("event_ts") <= cut) & (F.col("entity_id") != "c")),
        before.where(F.col("event_ts") <= cut),
    )


@pytest.mark.quality
def test_nab_series_features_and_labels(spark: SparkSession) -> None:
    require_shared(NAB)
    name = "realKnownCause/machine_temperature_system_failure.csv"
    raw = read_nab(spark, NAB, [name])
    n_raw = raw.count()
    feats = series_features(raw, SERIES_SPECS["nab"])
    assert feats.columns[4:] == feature_names("nab")
    rows = feats.count()
    gaps = feats.where("is_gap = 1").count()
    # Nothing lost: every raw point lands in exactly one step; every other step is a gap.
    assert feats.agg(F.sum("n_points")).first()[0] == n_raw  # type: ignore[index]
    assert rows == feats.where("n_points > 0").count() + gaps
    labelled = label_windows(feats, nab_windows(spark, NAB, [name]))
    assert labelled.where("is_anomaly").count() > 0
    # machine_temperature's failures drive temperature far from its daily mean.
    z = labelled.groupBy("is_anomaly").agg(F.avg(F.abs("value_z_1d")).alias("z")).collect()
    by = {r["is_anomaly"]: r["z"] for r in z}
    assert by[True] > by[False]


def test_sensor_generator_labels_failures(spark: SparkSession) -> None:
    sensors = SensorGenerateSettings(machines=4, failure_rate_per_machine_day=0.5)
    s = GenerateSettings(days=2, seed=1, sensors=sensors)
    raw, labels = gen.generate(spark, s)
    assert raw.columns == ["machine_id", "event_ts", "temperature", "vibration", "pressure"]
    kinds = {r[0]: r[1] for r in labels.groupBy("anomaly_type").count().collect()}
    assert kinds.get("failure", 0) > 0 and kinds.get("degradation", 0) > 0
    j = raw.join(labels, ["machine_id", "event_ts"])
    v = {r[0]: r[1] for r in j.groupBy("anomaly_type").agg(F.avg("vibration")).collect()}
    assert v["failure"] > 2 * v[None]  # vibration rises sharply before a failure
    feats = series_features(raw, SERIES_SPECS["sensors"], id_col="machine_id")
    assert feats.columns[4:] == feature_names("sensors")
    # Downtime after a failure leaves a gap in the regular grid, flagged.
    assert feats.where("is_gap = 1").count() >= 60
