"""NAB (Numenta Anomaly Benchmark) scoring rules, and a runner for the series detectors.

Scoring follows NAB v1.1's sweeper:

- the first ``min(floor(0.15 n), 750)`` rows of a series are probation: detections
  there count for nothing;
- a detection inside an anomaly window scores ``tp * sigmoid(x) / sigmoid(-1)`` of its
  relative position (``sigmoid(x) = 2 / (1 + exp(5 x)) - 1``, ``x = -(right - i + 1) /
  width``: exactly ``tp`` at the window start, 0 at its end); only the best (earliest)
  detection of a window counts; a window wholly inside the probation is not scored;
- a detection outside every window costs ``fp_weight`` times the same sigmoid of its
  distance past the previous window (``-1`` if no window precedes it or it is more than
  3 window widths past it);
- a window without detection costs ``fn_weight``;
- the corpus total is normalised as NAB's ``runner.normalize``: 0 for the null
  detector (the better of flagging nothing and flagging everything), 100 for ``tp``
  times the number of windows;
- one threshold per detector and profile, optimised over the whole corpus at every
  distinct score (:func:`sweep`, NAB's ``Sweeper.calcScoreByThreshold``).

``python -m lakehound.quality.nab --data DIR --out FILE.json`` runs it on any directory
in NAB's layout (``data/<category>/<file>.csv`` + ``windows.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from udfs.calibration import Threshold
from udfs.series import fit_score_group, probation_rows

DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"

PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "low_fp": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "low_fn": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}


def scaled_sigmoid(x: np.ndarray | float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0)


@dataclass(frozen=True)
class LabelledSeries:
    """One NAB series: values in time order, the window id of each row (-1 outside)."""

    name: str
    timestamps: np.ndarray
    values: np.ndarray
    window: np.ndarray
    n_windows: int
    # Filled by __post_init__: what a detection on each row is worth (row_weights).
    unweighted: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "unweighted", row_weights(self.window))

    @property
    def probation(self) -> int:
        return probation_rows(len(self.values))


def load_corpus(data_dir: Path = DATA_DIR) -> list[LabelledSeries]:
    """Every series named in ``data_dir/windows.json``, read from ``data_dir/data/<key>``."""
    labels = Path(data_dir) / "windows.json"
    if not labels.is_file():
        raise FileNotFoundError(
            f"{labels}: no windows.json (NAB layout: data/<cat>/<f>.csv + windows.json)"
        )
    windows = json.loads(labels.read_text())
    out = []
    for key in sorted(windows):
        path = Path(data_dir) / "data" / key
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in {labels} but missing")
        df = pd.read_csv(path, parse_dates=["timestamp"])
        if not {"timestamp", "value"} <= set(df.columns):
            raise ValueError(f"{path}: needs columns timestamp,value, has {list(df.columns)}")
        ts = df["timestamp"].to_numpy()
        win = np.full(len(df), -1)
        for w, (start, end) in enumerate(windows[key]):
            inside = (ts >= np.datetime64(pd.Timestamp(start))) & (
                ts <= np.datetime64(pd.Timestamp(end))
            )
            win[inside] = w
        out.append(
            LabelledSeries(key, ts, df["value"].to_numpy(np.float64), win, len(windows[key]))
        )
    return out


def row_weights(window: np.ndarray) -> np.ndarray:
    """Per row: the unweighted sigmoid score a detection there would get (window id per row)."""
    n = len(window)
    unweighted = np.full(n, -1.0)
    prev_right: int | None = None
    prev_width = 0
    i = 0
    while i < n:
        w = window[i]
        if w >= 0:
            right = i
            while right + 1 < n and window[right + 1] == w:
                right += 1
            width = right - i + 1
            idx = np.arange(i, right + 1)
            unweighted[idx] = scaled_sigmoid(-(right - idx + 1) / width)
            prev_right, prev_width = right, width
            i = right + 1
            continue
        if prev_right is not None:
            unweighted[i] = scaled_sigmoid(abs(prev_right - i) / max(prev_width - 1, 1))
        i += 1
    return unweighted


MAX_TP = float(2.0 / (1.0 + math.exp(-5.0)) - 1.0)  # scaled sigmoid at a window's first row


def sweep_weights(series: LabelledSeries, profile: dict[str, float]) -> np.ndarray:
    """Per row: what a detection there adds, as NAB's sweeper weights it.

    Inside a window ``tp * sigmoid / sigmoid(-1)`` (exactly ``tp`` on the window's first
    row), outside ``fp * sigmoid`` (negative). Probation rows are dropped by the callers.
    """
    inside = series.window >= 0
    return np.where(
        inside, series.unweighted * profile["tp"] / MAX_TP, series.unweighted * profile["fp"]
    )


def scorable_windows(series: LabelledSeries) -> np.ndarray:
    """Ids of the windows with at least one row after probation (NAB ignores the others)."""
    w = series.window[series.probation :]
    return np.unique(w[w >= 0])


def score_series(
    series: LabelledSeries, detections: np.ndarray, profile: dict[str, float]
) -> float:
    """Raw (unnormalised) NAB score of boolean ``detections`` on one series."""
    weights = sweep_weights(series, profile)
    scored = np.asarray(detections, dtype=bool).copy()
    scored[: series.probation] = False
    total = 0.0
    for w in scorable_windows(series):
        hit = scored & (series.window == w)
        # The earliest detection has the highest sigmoid: max == first.
        total += max(-profile["fn"], float(weights[hit].max())) if hit.any() else -profile["fn"]
    total += float(weights[scored & (series.window < 0)].sum())
    return total


def _null_and_perfect(
    corpus: list[LabelledSeries], profile: dict[str, float]
) -> tuple[float, float]:
    """NAB's baselines: the null detector's best raw score, and ``tp`` x every labelled window."""
    nothing = sum(score_series(s, np.zeros(len(s.values), bool), profile) for s in corpus)
    everything = sum(score_series(s, np.ones(len(s.values), bool), profile) for s in corpus)
    perfect = profile["tp"] * sum(s.n_windows for s in corpus)
    return max(nothing, everything), perfect


def normalised(
    corpus: list[LabelledSeries], detections: list[np.ndarray], profile: dict[str, float]
) -> float:
    """NAB's ``runner.normalize``: 100 x (raw - null) / (perfect - null)."""
    raw = sum(score_series(s, d, profile) for s, d in zip(corpus, detections, strict=True))
    null, perfect = _null_and_perfect(corpus, profile)
    return 100.0 * (raw - null) / (perfect - null)


def sweep(
    corpus: list[LabelledSeries], scores: list[np.ndarray], profile: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Raw corpus score at every distinct threshold: NAB's ``Sweeper.calcScoreByThreshold``.

    Returns ``(thresholds, raw)`` in decreasing threshold order, starting with ``+inf``
    (nothing detected); ``raw[i]`` is the corpus score when every row with
    ``score >= thresholds[i]`` is a detection. Vectorised: rows of all series are
    sorted once by score; a window's part is the running max of its detected rows'
    weights (floored at ``-fn``), so each row adds the increase of its window's max.
    """
    s_all, w_all, key_all = [], [], []
    n_keys = 0
    for s, sc in zip(corpus, scores, strict=True):
        if len(sc) != len(s.values):
            raise ValueError(f"{s.name}: {len(sc)} scores for {len(s.values)} rows")
        keep = slice(s.probation, None)
        weights = sweep_weights(s, profile)[keep]
        win = s.window[keep]
        s_all.append(np.asarray(sc, dtype=np.float64)[keep])
        w_all.append(weights)
        key_all.append(np.where(win >= 0, win + n_keys, -1))
        n_keys += s.n_windows
    score = np.concatenate(s_all)
    weight = np.concatenate(w_all)
    key = np.concatenate(key_all)
    n_scorable = len(np.unique(key[key >= 0]))
    order = np.argsort(-score, kind="stable")
    score, weight, key = score[order], weight[order], key[order]
    fn = profile["fn"]
    delta = np.where(key < 0, weight, 0.0)
    in_win = key >= 0
    if in_win.any():
        frame = pd.DataFrame({"key": key[in_win], "w": np.maximum(weight[in_win], -fn)})
        running = frame.groupby("key")["w"].cummax().to_numpy()
        previous = frame.assign(r=running).groupby("key")["r"].shift(1).fillna(-fn).to_numpy()
        delta[in_win] = running - previous
    raw = -fn * n_scorable + np.cumsum(delta)
    # The score at a threshold counts every row >= it: the last row of each run of ties.
    last = np.r_[score[1:] != score[:-1], True]
    thresholds = np.r_[np.inf, score[last]]
    return thresholds, np.r_[-fn * n_scorable, raw[last]]


def optimise(
    corpus: list[LabelledSeries], scores: list[np.ndarray], profile: dict[str, float]
) -> tuple[float, float]:
    """Best (threshold, normalised score) over every distinct score, as NAB's optimizer."""
    thresholds, raw = sweep(corpus, scores, profile)
    null, perfect = _null_and_perfect(corpus, profile)
    best = int(np.argmax(raw))  # first max = highest threshold among ties, as NAB's sort
    return float(thresholds[best]), 100.0 * (float(raw[best]) - null) / (perfect - null)


def unit_scores(raw: np.ndarray, train_rows: int) -> np.ndarray:
    """Raw scores -> [0, 1): ``u / (1 + u)`` with ``u = raw / max(training raw)``.

    Monotone per series, 0.5 at the largest score seen in training, and unlike an
    empirical CDF it keeps ranking the scores beyond the training maximum.
    """
    ref = float(np.max(raw[:train_rows])) if train_rows else float(np.max(raw))
    u = np.maximum(raw, 0.0) / max(ref, 1e-12)
    return u / (1.0 + u)


#: The series detectors the CLI and the quality report score by default (registry name ->
#: params), and the series ensemble: weighted mean of the members' [0, 1] scores.
DETECTORS: dict[str, dict[str, Any]] = {
    "robust_zscore": {},
    "zscore": {},
    "forecast_quantile": {},
    "holt_winters": {},
    "ewma": {},
    "moving_average": {},
    "sliding_zscore": {},
    "seasonal_zscore": {},
    "lstm_quantile": {},
    "cad_ose": {},
}
# The series ensemble, measured on the 35 shared series (standard / low FP / low FN):
# cad_ose (weight 4, its own [0, 1] score) + robust z (1, through the likelihood
# stage) 60.9 / 50.5 / 66.7, against 58.9 / 49.0 / 64.7 for cad_ose and 51.2 / 43.4 /
# 55.4 for robust z alone; weights 3 / 6 / 8 score 60.2 / 60.5 / 60.0, 2 and 1 score
# 58.0 and 57.0. On the even- and odd-numbered series apart: 61.2 and 62.6. Mixes tried:
# robust z + Holt-Winters (the previous ensemble, 49.9), cad_ose + robust z + Holt-
# Winters or forecast quantile (at most 59.0), several cad_ose range margins averaged
# (at most 54.6: averaging blurs cad_ose's one-detection-per-event output).
ENSEMBLE: dict[str, float] = {"cad_ose": 4.0, "robust_zscore": 1.0}

#: Detectors whose scores are already comparable across series, in [0, 1], with their
#: own suppression: the runner scores them as they are.
SCALE_FREE = frozenset({"likelihood", "cad_ose"})


def series_params(
    detector: str, params: dict[str, Any] | None, series: LabelledSeries
) -> dict[str, Any]:
    """``params`` plus what is derived from the series itself (Holt-Winters' daily period)."""
    p = dict(params or {})
    if detector in ("holt_winters", "seasonal_zscore") and "period" not in p:
        p["period"] = rows_per_day(series)
    if detector == "likelihood":
        base = p.get("base", "robust_zscore")
        p["base_params"] = series_params(base, p.get("base_params"), series)
    return p


def detector_scores(
    corpus: list[LabelledSeries],
    detector: str,
    params: dict[str, Any] | None = None,
    likelihood: bool = True,
) -> list[np.ndarray]:
    """Fit ``detector`` on each series' probation rows and score the whole series, in [0, 1].

    With ``likelihood`` (the default) a raw detector goes through the anomaly-likelihood
    and suppression stage (``udfs.detectors.likelihood``) with its default parameters;
    without it, raw scores are mapped by :func:`unit_scores`.
    """
    out = []
    for s in corpus:
        name, p = detector, series_params(detector, params, s)
        if likelihood and detector not in SCALE_FREE:
            name, p = "likelihood", {"base": detector, "base_params": p}
        res = fit_score_group(s.values, name, p, Threshold("quantile", 0.99), s.probation)
        raw = res["raw_score"].to_numpy()
        out.append(raw if name in SCALE_FREE else unit_scores(raw, max(s.probation, 1)))
    return out


def rows_per_day(series: LabelledSeries) -> int:
    step = np.median(np.diff(series.timestamps).astype("timedelta64[s]").astype(float))
    return max(2, round(float(86400.0 / max(step, 1.0))))


def run(
    detectors: dict[str, dict[str, Any]],
    data_dir: Path = DATA_DIR,
    likelihood: bool = True,
    ensembles: dict[str, dict[str, float]] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """{detector: {profile: {"score": normalised 0-100, "threshold": t}}}.

    ``ensembles`` maps a name to {member: weight}: the weighted mean of the members'
    [0, 1] scores (members must be among ``detectors``).
    """
    corpus = load_corpus(data_dir)
    scores = {
        name: detector_scores(corpus, name, params, likelihood)
        for name, params in detectors.items()
    }
    for name, members in (ensembles or {}).items():
        total = sum(members.values())
        scores[name] = [
            np.sum([w * scores[m][i] for m, w in members.items()], axis=0) / total
            for i in range(len(corpus))
        ]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, per_series in scores.items():
        out[name] = {}
        for prof, weights in PROFILES.items():
            thr, val = optimise(corpus, per_series, weights)
            out[name][prof] = {"score": round(val, 2), "threshold": thr}
    return out


def _table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [f"{'detector':<22}{'standard':>10}{'low FP':>10}{'low FN':>10}"]
    for name, prof in sorted(results.items(), key=lambda kv: -kv[1]["standard"]["score"]):
        cells = "".join(f"{prof[p]['score']:>10.1f}" for p in PROFILES)
        lines.append(f"{name:<22}{cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lakehound.quality.nab",
        description="Score every series detector and the ensemble on a NAB-layout "
        "directory (data/<category>/<file>.csv + windows.json) with NAB v1.1's rules.",
    )
    p.add_argument("--data", type=Path, default=DATA_DIR, help="NAB-layout directory")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument(
        "--detectors",
        help=f"comma-separated registry names (default: {','.join(DETECTORS)})",
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="score the detectors' raw scores, without the anomaly-likelihood stage",
    )
    args = p.parse_args(argv)
    names = args.detectors.split(",") if args.detectors else list(DETECTORS)
    detectors = {n: dict(DETECTORS.get(n, {})) for n in names}
    ensembles = {} if args.detectors else {"ensemble": dict(ENSEMBLE)}
    try:
        results = run(detectors, args.data, likelihood=not args.raw, ensembles=ensembles)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"data": str(args.data), "likelihood": not args.raw, "results": results}
        args.out.write_text(json.dumps(payload, indent=2, default=float))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
