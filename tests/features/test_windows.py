"""Running-total window sums (lakehound.features.windows) against a brute-force pandas oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehound.features.windows import mean_std, window_sums

FRAMES = {"cur": (-60, 0), "hist": (-300, -1), "delayed": (-600 + 1, -120)}


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 400
    return pd.DataFrame(
        {
            "id": [f"e{i}" for i in range(n)],
            "key": rng.choice(["a", "b", "c"], n, p=[0.7, 0.2, 0.1]),
            # Few distinct seconds: many ties, and frame edges hit exactly.
            "ts": rng.integers(0, 120, n) * 10,
            "x": rng.normal(5.0, 2.0, n).round(3),
        }
    )


def _brute(ev: pd.DataFrame, start: int, end: int) -> pd.DataFrame:
    rows = []
    for r in ev.itertuples():
        w = ev[(ev.key == r.key) & (ev.ts >= r.ts + start) & (ev.ts <= r.ts + end)]
        rows.append(
            {
                "id": r.id,
                "n": float(len(w)),
                "s": float(w.x.sum()),
                "mean": float(w.x.mean()) if len(w) else np.nan,
                "std": float(w.x.std(ddof=1)) if len(w) >= 2 else 0.0,
            }
        )
    return pd.DataFrame(rows).set_index("id")


def test_window_sums_equal_brute_force_frames(spark: SparkSession, events: pd.DataFrame) -> None:
    df = spark.createDataFrame(events).withColumnRenamed("ts", "_ts")
    sums = window_sums(
        df, "key", ["id", "_ts"], {"n": F.lit(1.0), "s": F.col("x"), "ss": F.col("x") ** 2}, FRAMES
    )
    cols = []
    for label in FRAMES:
        mean, std = mean_std(F.col(f"{label}_n"), F.col(f"{label}_s"), F.col(f"{label}_ss"))
        cols += [mean.alias(f"{label}_mean"), std.alias(f"{label}_std")]
    got = sums.select("*", *cols).toPandas().set_index("id").sort_index()
    assert len(got) == len(events)  # one row per input row, none lost or doubled
    for label, (start, end) in FRAMES.items():
        want = _brute(events, start, end).sort_index()
        np.testing.assert_array_equal(got[f"{label}_n"], want["n"], err_msg=label)
        np.testing.assert_allclose(got[f"{label}_s"], want["s"], atol=1e-9, err_msg=label)
        np.testing.assert_allclose(got[f"{label}_mean"], want["mean"], atol=1e-9, err_msg=label)
        np.testing.assert_allclose(got[f"{label}_std"], want["std"], atol=1e-6, err_msg=label)
    # The frames are not trivial: some rows see several events, some none.
    assert got["hist_n"].max() >= 5 and (got["delayed_n"] == 0).any()


def test_emit_probes_only_the_chosen_rows_but_sums_all(
    spark: SparkSession, events: pd.DataFrame
) -> None:
    df = spark.createDataFrame(events).withColumnRenamed("ts", "_ts")
    emit = F.col("_ts") >= 600  # "the run's dates": the earlier rows only feed windows
    got = (
        window_sums(df, "key", ["id", "_ts"], {"n": F.lit(1.0), "s": F.col("x")}, FRAMES, emit)
        .toPandas()
        .set_index("id")
        .sort_index()
    )
    chosen = events[events.ts >= 600]
    assert sorted(got.index) == sorted(chosen.id)
    for label, (start, end) in FRAMES.items():
        want = _brute(events, start, end).loc[got.index]
        np.testing.assert_array_equal(got[f"{label}_n"], want["n"], err_msg=label)
        np.testing.assert_allclose(got[f"{label}_s"], want["s"], atol=1e-9, err_msg=label)
