"""The single-process baseline: what a user would write with pandas + scikit-learn, no Spark.

Same raw CSV feed and the same stages as the Spark batch (:mod:`bench.batch`), timed
the same way:

* ``validate``: read every CSV as strings, parse types, apply the contract's row
  rules (required, allowed set, max length, range, finite, key duplicates), write
  the valid rows and the quarantined rows (with their reasons) as Parquet;
* ``featurize``: per-account and per-merchant time-window features with pandas
  ``groupby().rolling()`` (point in time: the windows end at the row, history
  windows just before it), written as Parquet;
* ``train``: the configured detectors' :class:`~udfs.bundle.ModelBundle` on a sample
  of at most ``train.sample_rows`` rows;
* ``score``: every bundle over every row (scores, severity, flags, explanations of
  flagged rows) and the mean-severity ensemble;
* ``write``: the long ``scores`` table (one row per event and detector, plus the
  ensemble) and the ``alerts`` as Parquet.

It computes the 17 named transaction features (``log_amount`` ... ``dow_cos``), not
the 32 window-grid columns nor the label-delayed merchant risk the Spark job adds, so
it does somewhat less work than the Spark pipeline; dataset-level expectations
(Great Expectations) are not run either.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from bench.common import timed
from lakehound.config import Config
from schemas.transactions import TRANSACTIONS
from udfs.bundle import ModelBundle
from udfs.calibration import Threshold

FEATURES = [
    "log_amount", "acct_count_1h", "acct_count_1d", "acct_count_7d", "acct_amount_sum_1d",
    "acct_amount_z_30d", "acct_amount_std_30d", "acct_secs_since_prev", "acct_new_merchant",
    "acct_new_country", "acct_hour_deviation", "merchant_count_1d", "merchant_amount_z_7d",
    "hour_sin", "hour_cos", "dow_sin", "dow_cos",
]  # fmt: skip
_STD_FLOOR = 0.1
_HORIZON_S = 30 * 86400


def validate(raw_dir: Path, out: Path) -> pd.DataFrame:
    files = sorted(raw_dir.rglob("*.csv"))
    names = [f.name for f in TRANSACTIONS.fields]
    df = pd.concat(
        [pd.read_csv(f, dtype=str, keep_default_na=False, na_values=[""]) for f in files],
        ignore_index=True,
    )
    df = df.reindex(columns=names)
    bad = pd.Series("", index=df.index, dtype=object)

    def fail(mask: pd.Series, reason: str) -> None:
        bad.loc[mask.to_numpy()] = bad.loc[mask.to_numpy()] + reason + ";"

    for f in TRANSACTIONS.fields:
        col = df[f.name]
        missing = col.isna()
        if f.required or f.name in TRANSACTIONS.key or f.name == TRANSACTIONS.event_time:
            fail(missing, f"missing:{f.name}")
        if f.name == TRANSACTIONS.event_time:
            ts = pd.to_datetime(col, utc=True, format="ISO8601", errors="coerce")
            fail(ts.isna() & ~missing, f"invalid_type:{f.name}")
            df[f.name] = ts
        elif f.dtype.typeName() == "double":
            num = pd.to_numeric(col, errors="coerce")
            fail(num.isna() & ~missing, f"invalid_type:{f.name}")
            if f.finite:
                fail(~np.isfinite(num.fillna(0.0)), f"not_finite:{f.name}")
            if f.min_value is not None:
                low = num <= f.min_value if f.min_exclusive else num < f.min_value
                fail(low, "below_min")
            if f.max_value is not None:
                fail(num > f.max_value, "above_max")
            df[f.name] = num
        else:
            if f.allowed is not None:
                fail(~missing & ~col.isin(f.allowed), "not_in_set")
            if f.max_length is not None:
                fail(col.str.len() > f.max_length, "too_long")
    ok = bad == ""
    event_time = str(TRANSACTIONS.event_time)
    valid = df[ok].sort_values([*TRANSACTIONS.key, event_time], kind="stable")
    dup = valid.duplicated(list(TRANSACTIONS.key), keep="first")
    quarantine = pd.concat(
        [df[~ok].assign(reasons=bad[~ok]), valid[dup].assign(reasons="duplicate;")]
    )
    valid = valid[~dup]
    valid.to_parquet(out / "validated.parquet", index=False)
    quarantine.astype({TRANSACTIONS.event_time: str}).to_parquet(
        out / "quarantine.parquet", index=False
    )
    return valid


def _rolling(
    df: pd.DataFrame,
    key: str | list[str],
    col: str,
    window: str,
    how: str,
    closed: Literal["left", "both"],
) -> np.ndarray:
    """``how`` of ``col`` over the time window per key, aligned to ``df``'s rows."""
    keys = [key] if isinstance(key, str) else key
    codes = df.groupby(keys, sort=False).ngroup().to_numpy()
    ts = df["event_ts"].to_numpy()
    order = np.lexsort((ts, codes))  # by key, then time: the order rolling returns
    part = pd.DataFrame({"k": codes[order], "event_ts": ts[order], "v": df[col].to_numpy()[order]})
    roll = part.groupby("k", sort=True).rolling(window, on="event_ts", closed=closed)["v"]
    out = np.empty(len(df))
    out[order] = getattr(roll, how)().to_numpy(dtype=np.float64)
    return out


def featurize(valid: pd.DataFrame, out: Path) -> pd.DataFrame:
    df = valid[["transaction_id", "account_id", "merchant_id", "country", "amount", "event_ts"]]
    df = df.sort_values("event_ts", kind="stable").reset_index(drop=True)
    df["event_ts"] = df["event_ts"].dt.tz_localize(None)
    df["log_amount"] = np.log1p(df["amount"].to_numpy())
    df["one"] = 1.0
    hour = (df["event_ts"].dt.hour + df["event_ts"].dt.minute / 60.0).to_numpy()
    angle = 2 * math.pi * hour / 24.0
    df["_hs"], df["_hc"] = np.sin(angle), np.cos(angle)
    dow = df["event_ts"].dt.dayofweek.to_numpy()
    f = pd.DataFrame(
        {
            "event_id": df["transaction_id"],
            "entity_id": df["account_id"],
            "event_ts": df["event_ts"],
            "log_amount": df["log_amount"],
        }
    )
    acct = "account_id"
    f["acct_count_1h"] = _rolling(df, acct, "one", "1h", "sum", "both")
    f["acct_count_1d"] = _rolling(df, acct, "one", "1D", "sum", "both")
    f["acct_count_7d"] = _rolling(df, acct, "one", "7D", "sum", "both")
    f["acct_amount_sum_1d"] = np.log1p(_rolling(df, acct, "amount", "1D", "sum", "both"))
    n_hist = np.nan_to_num(_rolling(df, acct, "one", "30D", "sum", "left"))
    mean_hist = _rolling(df, acct, "log_amount", "30D", "mean", "left")
    std_hist = _rolling(df, acct, "log_amount", "30D", "std", "left")
    z = (f["log_amount"].to_numpy() - mean_hist) / np.maximum(np.nan_to_num(std_hist), _STD_FLOOR)
    f["acct_amount_z_30d"] = np.where(n_hist >= 3, z, 0.0)
    f["acct_amount_std_30d"] = np.nan_to_num(std_hist)
    prev = df.groupby(acct, sort=False)["event_ts"].shift(1)
    gap = (df["event_ts"] - prev).dt.total_seconds().to_numpy()
    gap = np.where(np.isnan(gap) | (gap > _HORIZON_S), _HORIZON_S, gap)
    f["acct_secs_since_prev"] = np.log1p(gap)
    n_am = _rolling(df, [acct, "merchant_id"], "one", "30D", "sum", "left")
    n_ac = _rolling(df, [acct, "country"], "one", "30D", "sum", "left")
    f["acct_new_merchant"] = (np.nan_to_num(n_am) == 0).astype(np.float64)
    f["acct_new_country"] = (np.nan_to_num(n_ac) == 0).astype(np.float64)
    hs = _rolling(df, acct, "_hs", "30D", "mean", "left")
    hc = _rolling(df, acct, "_hc", "30D", "mean", "left")
    dev = 1.0 - (df["_hs"].to_numpy() * hs + df["_hc"].to_numpy() * hc)
    f["acct_hour_deviation"] = np.where(n_hist >= 3, dev, 0.0)
    merch = "merchant_id"
    f["merchant_count_1d"] = _rolling(df, merch, "one", "1D", "sum", "both")
    n_m = np.nan_to_num(_rolling(df, merch, "one", "7D", "sum", "left"))
    mean_m = _rolling(df, merch, "log_amount", "7D", "mean", "left")
    std_m = _rolling(df, merch, "log_amount", "7D", "std", "left")
    zm = (f["log_amount"].to_numpy() - mean_m) / np.maximum(np.nan_to_num(std_m), _STD_FLOOR)
    f["merchant_amount_z_7d"] = np.where(n_m >= 3, zm, 0.0)
    f["hour_sin"], f["hour_cos"] = df["_hs"].to_numpy(), df["_hc"].to_numpy()
    f["dow_sin"] = np.sin(2 * math.pi * dow / 7.0)
    f["dow_cos"] = np.cos(2 * math.pi * dow / 7.0)
    f["event_date"] = f["event_ts"].dt.date
    f.to_parquet(out / "features.parquet", index=False)
    return f


def train(features: pd.DataFrame, cfg: Config) -> dict[str, ModelBundle]:
    n = min(len(features), cfg.train.sample_rows)
    sample = features.sample(n=n, random_state=0) if n < len(features) else features
    X = sample[FEATURES].to_numpy(dtype=np.float64)
    bundles = {}
    for det in cfg.scoring.detectors:
        thr = Threshold(det.threshold.policy, det.threshold.value)
        bundles[det.id] = ModelBundle.fit(det.name, dict(det.params), FEATURES, X, thr)
    return bundles


def score(features: pd.DataFrame, bundles: dict[str, ModelBundle]) -> dict[str, Any]:
    X = features[FEATURES].to_numpy(dtype=np.float64)
    scored = {name: b.score(X, top_k=3) for name, b in bundles.items()}
    ensemble = np.mean([s.severity for s in scored.values()], axis=0)
    return {"members": scored, "ensemble": ensemble}


def write(features: pd.DataFrame, scored: dict[str, Any], cfg: Config, out: Path) -> None:
    keys = features[["event_id", "entity_id", "event_ts", "event_date"]]
    parts = []
    for name, s in scored["members"].items():
        expl: list[Any] = [
            [{"feature": f, "value": v, "contribution": c, "method": s.method} for f, v, c in e]
            for e in s.explanation
        ]
        parts.append(
            keys.assign(
                detector=name,
                raw_score=s.raw,
                severity=s.severity,
                is_anomaly=s.is_anomaly,
                explanation=pd.Series(expl, index=keys.index, dtype=object),
            )
        )
    ens = scored["ensemble"]
    parts.append(keys.assign(detector="ensemble", raw_score=ens, severity=ens,
                             is_anomaly=ens >= cfg.scoring.alert_severity))  # fmt: skip
    pd.concat(parts, ignore_index=True).to_parquet(out / "scores.parquet", index=False)
    keys[ens >= cfg.scoring.alert_severity].assign(
        severity=ens[ens >= cfg.scoring.alert_severity]
    ).to_parquet(out / "alerts.parquet", index=False)


def run(raw_dir: Path, out: Path, cfg: Config) -> dict[str, float]:
    """Seconds per stage (and end to end) of the whole pandas pipeline."""
    out.mkdir(parents=True, exist_ok=True)
    t: dict[str, float] = {}
    t["validate"], valid = timed(lambda: validate(raw_dir, out))
    t["featurize"], feats = timed(lambda: featurize(valid, out))
    t["train"], bundles = timed(lambda: train(feats, cfg))
    t["score"], scored = timed(lambda: score(feats, bundles))
    t["write"], _ = timed(lambda: write(feats, scored, cfg, out))
    t["end_to_end"] = sum(t[s] for s in ["validate", "featurize", "train", "score", "write"])
    t["rows_scored"] = float(len(feats))
    return t
