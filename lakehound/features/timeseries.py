"""Point-in-time correct features for sensor and metric time series, in native Spark.

One row per (series, step) after regularising each series to a fixed step:

1. **Bucket**: a raw point at time ``t`` belongs to the step ending at
   ``ceil(t / step) * step``, and the feature row carries that *end* as its
   ``event_ts``, so a row only ever summarises points at or before its timestamp.
   Several points in one step are combined with ``agg`` (mean by default).
2. **Grid**: every step from a series' first to its last observed step exists;
   steps with no raw point get ``is_gap = 1``.
3. **Fill** (explicit policy, ``fill``): ``ffill`` carries the last observed value
   forward for at most ``max_fill_steps`` steps; ``zero`` writes 0.0; ``none``
   leaves nulls. Interpolation is deliberately not offered: it needs the *next*
   point, which would leak the future into the past.
4. **Rolling** mean/std/min/max over the *previous* ``w`` steps (the current step
   excluded, so ``z`` compares a value with its past), computed on observed
   values only (filled values would shrink the spread); lags and differences on
   the filled value; seasonal keys (hour of day, day of week, Monday = 0).

Policies, also written in the registry descriptions:

* **missing values**: gaps are filled as above; a value still missing after the
  fill horizon stays null, and so do the features derived from it, while
  ``is_gap``/``steps_since_obs`` say why (a silent sensor is itself a signal);
* **new series, no history**: with fewer than ``min_periods`` observed past
  points, mean/min/max equal the current value, std is 0 and z is 0 ("no
  evidence of anything unusual"); a missing lag takes the current value (diff 0);
* **extreme values** are kept (they are what we look for); z uses a small std
  floor, relative to the mean, and is clipped to ``±z_clip`` so one flat series
  cannot produce z = 1e12 and dominate a detector.

Appending later points never changes earlier rows: every frame ends at the
current step, and the grid of a series only grows forwards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

FillPolicy = Literal["ffill", "zero", "none"]
BucketAgg = Literal["mean", "last", "min", "max", "sum"]

_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
_DURATION = re.compile(r"^\s*(\d+)\s*([a-zA-Z]+)\s*$")


def duration_seconds(text: str) -> int:
    """``"5 minutes"`` -> 300. Accepts s/sec/second(s), m/min/minute(s), h/hour(s), d/day(s)."""
    m = _DURATION.match(text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a duration: {text!r} (expected e.g. '5 minutes', '1 hour', '30s')")
    seconds = int(m.group(1)) * _UNITS[m.group(2).lower()]
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {text!r}")
    return seconds


def duration_label(seconds: int) -> str:
    """Short label used in feature names: 900 -> ``15m``, 3600 -> ``1h``, 86400 -> ``1d``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class SeriesSpec:
    """What :func:`series_features` computes; the registry derives feature names from it."""

    value_cols: tuple[str, ...] = ("value",)
    step: str = "5 minutes"
    windows: tuple[int, ...] = (12, 288)  # in steps
    lags: tuple[int, ...] = (1,)
    fill: FillPolicy = "ffill"
    max_fill_steps: int = 12
    min_periods: int = 3
    agg: BucketAgg = "mean"
    z_clip: float = 100.0

    def __post_init__(self) -> None:
        duration_seconds(self.step)  # fails early on a bad step
        if not self.value_cols:
            raise ValueError("SeriesSpec.value_cols must name at least one column")
        if any(w < 2 for w in self.windows):
            raise ValueError(f"SeriesSpec.windows must be >= 2 steps, got {self.windows}")
        if any(k < 1 for k in self.lags):
            raise ValueError(f"SeriesSpec.lags must be >= 1, got {self.lags}")
        if self.fill not in ("ffill", "zero", "none"):
            raise ValueError(f"SeriesSpec.fill must be ffill, zero or none, got {self.fill!r}")
        if self.agg not in ("mean", "last", "min", "max", "sum"):
            raise ValueError(f"SeriesSpec.agg must be mean/last/min/max/sum, got {self.agg!r}")
        if self.max_fill_steps < 0 or self.min_periods < 1 or self.z_clip <= 0:
            raise ValueError("SeriesSpec: max_fill_steps >= 0, min_periods >= 1, z_clip > 0")

    @property
    def step_seconds(self) -> int:
        return duration_seconds(self.step)

    def window_label(self, steps: int) -> str:
        return duration_label(steps * self.step_seconds)


# (name, description, window, dtype) in output column order; the registry wraps
# these in FeatureDef so names are written exactly once.
CatalogEntry = tuple[str, str, str, str]


def feature_catalog(spec: SeriesSpec) -> list[CatalogEntry]:
    """Every feature column :func:`series_features` writes for ``spec``, in order."""
    step = duration_label(spec.step_seconds)
    out: list[CatalogEntry] = [
        ("is_gap", f"1.0 if no raw point fell in this {step} step, else 0.0", step, "double"),
        (
            "steps_since_obs",
            "steps since the last step with a raw point (0 when observed)",
            "history",
            "double",
        ),
        ("n_points", f"raw points that fell in this {step} step", step, "double"),
        ("hour_of_day", "hour of day of the step end, 0-23 (seasonal key)", "row", "int"),
        ("day_of_week", "day of week of the step end, Monday = 0 (seasonal key)", "row", "int"),
    ]
    for c in spec.value_cols:
        out.append(
            (
                c,
                f"{c} regularised to {step} ({spec.agg}), gaps filled by {spec.fill} "
                f"for at most {spec.max_fill_steps} steps, else null",
                step,
                "double",
            )
        )
        for k in spec.lags:
            lag = spec.window_label(k)
            out.append(
                (f"{c}_lag_{lag}", f"{c} {lag} earlier (current value if none)", lag, "double")
            )
            out.append((f"{c}_diff_{lag}", f"{c} minus its value {lag} earlier", lag, "double"))
        for w in spec.windows:
            lbl = spec.window_label(w)
            past = f"observed {c} over the previous {lbl}, this step excluded"
            fallback = f"(< {spec.min_periods} points: the current value)"
            out += [
                (f"{c}_mean_{lbl}", f"mean of {past} {fallback}", lbl, "double"),
                (
                    f"{c}_std_{lbl}",
                    f"sample std of {past} (0 if < {spec.min_periods})",
                    lbl,
                    "double",
                ),
                (f"{c}_min_{lbl}", f"min of {past} {fallback}", lbl, "double"),
                (f"{c}_max_{lbl}", f"max of {past} {fallback}", lbl, "double"),
                (
                    f"{c}_z_{lbl}",
                    f"({c} - mean) / std over the previous {lbl}, clipped to ±{spec.z_clip:g} "
                    f"(0 if < {spec.min_periods} points)",
                    lbl,
                    "double",
                ),
            ]
    return out


def feature_names(spec: SeriesSpec) -> list[str]:
    return [name for name, *_ in feature_catalog(spec)]


def _bucket_agg(agg: BucketAgg, col: str, ts_col: str) -> Column:
    if agg == "mean":
        return F.avg(col)
    if agg == "last":
        # max_by is deterministic (latest point wins); F.last would depend on row order.
        return F.max_by(col, ts_col)
    if agg == "min":
        return F.min(col)
    if agg == "max":
        return F.max(col)
    return F.sum(col)


def regularise(
    df: DataFrame,
    spec: SeriesSpec,
    *,
    id_col: str = "series_id",
    ts_col: str = "event_ts",
) -> DataFrame:
    """Raw points -> one row per (series, step) with observed and filled values.

    Output: ``id_col``, ``_t`` (step end, epoch seconds), ``n_points``, ``is_gap``,
    ``steps_since_obs``, ``_obs_<c>`` (observed, null in gaps) and ``<c>`` (filled).
    """
    missing = [c for c in (id_col, ts_col, *spec.value_cols) if c not in df.columns]
    if missing:
        raise ValueError(f"series_features: input lacks column(s) {missing}; has {df.columns}")
    step_s = spec.step_seconds
    # Micro-second precision so a point one microsecond past a boundary goes to the next step.
    end_s = F.ceil(F.unix_micros(F.col(ts_col)) / F.lit(step_s * 1_000_000)).cast("long") * step_s
    buckets = (
        df.where(F.col(ts_col).isNotNull() & F.col(id_col).isNotNull())
        .withColumn("_t", end_s)
        .groupBy(id_col, "_t")
        .agg(
            F.count(F.lit(1)).alias("n_points"),
            *[
                _bucket_agg(spec.agg, c, ts_col).cast("double").alias(f"_obs_{c}")
                for c in spec.value_cols
            ],
        )
    )
    grid = (
        buckets.groupBy(id_col)
        .agg(F.min("_t").alias("_lo"), F.max("_t").alias("_hi"))
        .select(id_col, F.explode(F.sequence("_lo", "_hi", F.lit(step_s).cast("long"))).alias("_t"))
    )
    x = grid.join(buckets, [id_col, "_t"], "left").withColumn(
        "n_points", F.coalesce(F.col("n_points"), F.lit(0)).cast("double")
    )
    by_time = Window.partitionBy(id_col).orderBy("_t")
    upto_now = by_time.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    fill_frame = by_time.rangeBetween(-spec.max_fill_steps * step_s, 0)
    last_obs = F.max(F.when(F.col("n_points") > 0, F.col("_t"))).over(upto_now)
    filled: list[Column] = []
    for c in spec.value_cols:
        obs = F.col(f"_obs_{c}")
        if spec.fill == "ffill":
            value = F.last(obs, ignorenulls=True).over(fill_frame)
        elif spec.fill == "zero":
            value = F.coalesce(obs, F.lit(0.0))
        else:
            value = obs
        filled.append(value.alias(c))
    return x.select(
        id_col,
        "_t",
        "n_points",
        (F.col("n_points") == 0).cast("double").alias("is_gap"),
        ((F.col("_t") - last_obs) / step_s).cast("double").alias("steps_since_obs"),
        *[f"_obs_{c}" for c in spec.value_cols],
        *filled,
    )


def series_features(
    df: DataFrame,
    spec: SeriesSpec | None = None,
    *,
    id_col: str = "series_id",
    ts_col: str = "event_ts",
) -> DataFrame:
    """Raw points ``(id_col, ts_col, *spec.value_cols)`` -> one feature row per series step.

    Output: ``event_id``, ``entity_id`` (the series id as a string), ``event_ts``
    (step end), ``event_date`` and then :func:`feature_names` in order. ``df`` must
    hold the run's dates plus the look-back of the longest window; the caller
    filters the result to the run's dates.
    """
    spec = spec or SeriesSpec()
    step_s = spec.step_seconds
    x = regularise(df, spec, id_col=id_col, ts_col=ts_col)
    by_time = Window.partitionBy(id_col).orderBy("_t")
    cols: list[Column] = []
    for c in spec.value_cols:
        v = F.col(c)
        for k in spec.lags:
            lag = F.coalesce(F.lag(v, k).over(by_time), v)
            cols += [lag.alias(f"{c}_lag_{spec.window_label(k)}")]
            cols += [(v - lag).alias(f"{c}_diff_{spec.window_label(k)}")]
        obs = F.col(f"_obs_{c}")
        for w in spec.windows:
            lbl = spec.window_label(w)
            past = by_time.rangeBetween(-w * step_s, -step_s)
            n = F.count(obs).over(past)
            enough = n >= spec.min_periods
            mean = F.avg(obs).over(past)
            std = F.coalesce(F.stddev_samp(obs).over(past), F.lit(0.0))
            # A relative floor: a flat series (std 0) only reports a real change.
            floor = F.greatest(F.abs(mean) * 1e-6, F.lit(1e-9))
            z = (v - mean) / F.greatest(std, floor)
            z = F.least(F.greatest(z, F.lit(-spec.z_clip)), F.lit(spec.z_clip))
            cols += [
                F.when(enough, mean).otherwise(v).alias(f"{c}_mean_{lbl}"),
                F.when(enough, std)
                .otherwise(F.when(v.isNotNull(), F.lit(0.0)))
                .alias(f"{c}_std_{lbl}"),
                F.when(enough, F.min(obs).over(past)).otherwise(v).alias(f"{c}_min_{lbl}"),
                F.when(enough, F.max(obs).over(past)).otherwise(v).alias(f"{c}_max_{lbl}"),
                F.when(enough, z)
                .otherwise(F.when(v.isNotNull(), F.lit(0.0)))
                .alias(f"{c}_z_{lbl}"),
            ]
    ts = F.timestamp_seconds(F.col("_t"))
    x = x.select("*", *cols).withColumn("event_ts", ts)
    x = x.withColumn("hour_of_day", F.hour("event_ts")).withColumn(
        "day_of_week", ((F.dayofweek("event_ts") + 5) % 7).cast("int")
    )
    entity = F.col(id_col).cast("string")
    return x.select(
        F.format_string("%s@%s", entity, F.date_format("event_ts", "yyyy-MM-dd'T'HH:mm:ss")).alias(
            "event_id"
        ),
        entity.alias("entity_id"),
        "event_ts",
        F.to_date("event_ts").alias("event_date"),
        *feature_names(spec),
    )


# ---------------------------------------------------------------------------
# NAB adapter: the real labelled series in ../shared/data/nab
# ---------------------------------------------------------------------------

NAB_SCHEMA = "timestamp STRING, value DOUBLE"


def read_nab(spark: SparkSession, root: str | Path, names: Sequence[str]) -> DataFrame:
    """NAB CSVs ``<root>/data/<category>/<name>.csv`` -> ``(series_id, event_ts, value)``.

    ``series_id`` is the NAB key ``"<category>/<name>.csv"`` so it joins with
    ``windows.json``. NAB timestamps are naive wall-clock; they are read as UTC.
    """
    if not names:
        raise ValueError("read_nab needs at least one series name")
    frames = []
    for name in names:
        path = Path(root) / "data" / name
        if not path.exists():
            raise FileNotFoundError(f"NAB series not found: {path}")
        frames.append(
            spark.read.schema(NAB_SCHEMA)
            .option("header", "true")
            .csv(str(path))
            .select(
                F.lit(name).alias("series_id"),
                F.to_timestamp("timestamp", "yyyy-MM-dd HH:mm:ss").alias("event_ts"),
                "value",
            )
        )
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out


def nab_windows(spark: SparkSession, root: str | Path, names: Sequence[str]) -> DataFrame:
    """NAB anomaly windows for ``names`` -> ``(series_id, start_ts, end_ts)``."""
    data = json.loads((Path(root) / "windows.json").read_text(encoding="utf-8"))
    rows = [(n, s[:19], e[:19]) for n in names for s, e in data.get(n, [])]
    df = spark.createDataFrame(rows, "series_id STRING, start STRING, end STRING")
    return df.select(
        "series_id",
        F.to_timestamp("start", "yyyy-MM-dd HH:mm:ss").alias("start_ts"),
        F.to_timestamp("end", "yyyy-MM-dd HH:mm:ss").alias("end_ts"),
    )


def label_windows(
    features: DataFrame, windows: DataFrame, *, entity_col: str = "entity_id"
) -> DataFrame:
    """Add ``is_anomaly`` (boolean): the row's ``event_ts`` lies in one of its series' windows.

    The windows of one series must not overlap (true for NAB).
    """
    w = windows.select(
        F.col("series_id").alias("_sid"), F.col("start_ts").alias("_s"), F.col("end_ts").alias("_e")
    )
    # NAB windows of one series never overlap, so the left join keeps one row per row.
    hit = features.join(
        F.broadcast(w),
        (F.col(entity_col) == F.col("_sid")) & F.col("event_ts").between(F.col("_s"), F.col("_e")),
        "left",
    )
    return hit.withColumn("is_anomaly", F.col("_sid").isNotNull()).drop("_sid", "_s", "_e")
