"""Log-session anomaly detection quality on HDFS (DeepLog / loglizer protocol).

    python -m lakehound.quality.logs --hdfs-sessions DIR --out FILE.json

``DIR`` holds ``hdfs_train_normal.txt`` (one normal session a line, log keys
separated by spaces) and ``hdfs_sessions_labelled.csv`` (``Sequence,label``; label
0 normal, 1 anomaly). Every detector is fitted on the normal training sessions
only; its threshold comes from that fit (``threshold_``), never from the test
labels. Printed and written: precision / recall / F1 per detector (+ ROC-AUC of
the raw score, for information).

Raw lines reach the same detectors with ``--hdfs-log FILE --hdfs-labels CSV``
(loghub's ``HDFS.log`` and ``anomaly_label.csv``: ``BlockId,Label`` with
``Normal`` / ``Anomaly``): the lines are parsed, templates mined
(``lakehound.features.logs``), grouped by block (``lakehound.features.sessions``);
the first ``--train-fraction`` of the sessions (by first line) gives the
training sessions (the normal ones), the rest is scored.

``--bgl DIR`` (loghub's ``BGL_2k.log``): (``--entity``, ``--window``) time windows
as sessions, a window anomalous when one of its lines has an alert label; every
window is scored by detectors fitted on the normal windows of the other
``--folds`` folds (random folds, seeded). BGL_2k samples 2,000 lines from seven
months, so a time split leaves most of the later half's templates unseen.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from udfs.detectors.logs import KeyVocabulary, count_matrix
from udfs.detectors.registry import create

TRAIN_FILE = "hdfs_train_normal.txt"
TEST_FILE = "hdfs_sessions_labelled.csv"

# name -> (registry detector, params). "pca_spe" is loglizer's setting (TF-IDF,
# 95 % variance); "pca_spe_counts" skips TF-IDF, whose idf is 0 for a key present in
# every training session (HDFS's allocate / add-stored-block keys), so a session
# missing or repeating those keys cannot move its SPE (see the README's HDFS table).
DETECTORS: dict[str, tuple[str, dict[str, Any]]] = {
    "pca_spe": ("pca_spe", {}),
    "pca_spe_counts": ("pca_spe", {"term_weighting": "none", "n_components": 0.99}),
    "invariants_mining": ("invariants_mining", {}),
    "deeplog": ("deeplog", {}),
}


class DataError(ValueError):
    """An input file is missing or malformed; the message names the file and row."""


def read_train(path: Path) -> list[list[str]]:
    """Sessions of a DeepLog-style file: one a line, keys separated by whitespace."""
    if not path.is_file():
        raise DataError(f"{path}: training file not found")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        keys = line.split()
        if keys:
            out.append(keys)
        elif line.strip():
            raise DataError(f"{path}:{i}: unreadable session {line!r}")
    if not out:
        raise DataError(f"{path}: no sessions")
    return out


def _csv_rows(
    path: Path, required: tuple[str, ...], what: str
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV whose header has ``required``; errors name the file."""
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not set(required) <= set(reader.fieldnames):
            names = " and ".join(f"'{c}'" for c in required)
            raise DataError(f"{path}: header must have {names}, got {reader.fieldnames}")
        yield from enumerate(reader, start=2)


def read_labelled(path: Path) -> tuple[list[list[str]], np.ndarray]:
    """``Sequence,label`` CSV -> (sessions, labels 0/1)."""
    seqs: list[list[str]] = []
    labels: list[int] = []
    for row_no, row in _csv_rows(path, ("Sequence", "label"), "labelled sessions file"):
        label = (row.get("label") or "").strip()
        if label not in ("0", "1"):
            raise DataError(f"{path}:{row_no}: column 'label' must be 0 or 1, got {label!r}")
        keys = (row.get("Sequence") or "").split()
        if not keys:
            raise DataError(f"{path}:{row_no}: column 'Sequence' is empty")
        seqs.append(keys)
        labels.append(int(label))
    if not seqs:
        raise DataError(f"{path}: no sessions")
    return seqs, np.asarray(labels, dtype=np.int64)


def metrics(labels: np.ndarray, flagged: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """Session-level precision / recall / F1 of ``flagged`` against ``labels``."""
    y = labels.astype(bool)
    tp = int(np.sum(flagged & y))
    fp = int(np.sum(flagged & ~y))
    fn = int(np.sum(~flagged & y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    out: dict[str, Any] = {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "flagged": int(flagged.sum()),
    }
    if 0 < y.sum() < y.size:
        from sklearn.metrics import roc_auc_score

        out["roc_auc"] = round(float(roc_auc_score(y, scores)), 4)
    return out


def evaluate(
    train: Sequence[Sequence[str]],
    test: Sequence[Sequence[str]],
    labels: np.ndarray,
    detectors: Sequence[str] = tuple(DETECTORS),
) -> dict[str, Any]:
    """Fit each detector on ``train`` (normal sessions), score ``test``, compare to ``labels``."""
    if len(test) != len(labels):
        raise ValueError(f"evaluate: {len(test)} test sessions but {len(labels)} labels")
    unknown = [d for d in detectors if d not in DETECTORS]
    if unknown:
        raise ValueError(f"unknown detector(s) {unknown}; known: {sorted(DETECTORS)}")
    vocab = KeyVocabulary(k for s in train for k in s)
    codes_train, codes_test = vocab.encode(train), vocab.encode(test)
    counts_train = count_matrix(codes_train, vocab.size)
    counts_test = count_matrix(codes_test, vocab.size)
    result: dict[str, Any] = {
        "train_sessions": len(train),
        "test_sessions": len(test),
        "test_anomalies": int(labels.sum()),
        "keys_in_training": vocab.size,
        "detectors": {},
    }
    for name in detectors:
        registry_name, params = DETECTORS[name]
        det = create(registry_name, **params)
        sequences = getattr(det, "input_kind", "") == "sequences"
        xtr, xte = (codes_train, codes_test) if sequences else (counts_train, counts_test)
        t0 = time.perf_counter()
        det.fit(xtr)
        t1 = time.perf_counter()
        scores = det.score(xte)
        t2 = time.perf_counter()
        threshold = float(det.threshold_)  # type: ignore[attr-defined]
        result["detectors"][name] = {
            "detector": registry_name,
            "params": params,
            "threshold": threshold,
            **metrics(labels, scores > threshold, scores),
            "fit_s": round(t1 - t0, 2),
            "score_s": round(t2 - t1, 2),
        }
    return result


def hdfs_sessions(directory: Path, detectors: Sequence[str] = tuple(DETECTORS)) -> dict[str, Any]:
    """The pre-parsed HDFS sessions of ``directory`` (see the module doc)."""
    train = read_train(directory / TRAIN_FILE)
    test, labels = read_labelled(directory / TEST_FILE)
    return {"data": str(directory), **evaluate(train, test, labels, detectors)}


def read_block_labels(path: Path) -> dict[str, int]:
    """loghub ``anomaly_label.csv`` (``BlockId,Label``: Normal / Anomaly) -> block -> 0/1."""
    out: dict[str, int] = {}
    for row_no, row in _csv_rows(path, ("BlockId", "Label"), "label file"):
        label = (row.get("Label") or "").strip()
        if label not in ("Normal", "Anomaly"):
            raise DataError(
                f"{path}:{row_no}: column 'Label' must be Normal or Anomaly, got {label!r}"
            )
        out[(row.get("BlockId") or "").strip()] = int(label == "Anomaly")
    return out


def hdfs_raw(
    spark: Any,
    log: Path,
    labels_csv: Path,
    *,
    train_fraction: float = 0.5,
    detectors: Sequence[str] = tuple(DETECTORS),
) -> dict[str, Any]:
    """Raw HDFS lines -> templates -> block sessions -> the same detectors."""
    from pyspark.sql import functions as F

    from lakehound.features import logs as L
    from lakehound.features import sessions as S

    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    if not log.is_file():
        raise DataError(f"{log}: log file not found")
    block_labels = read_block_labels(labels_csv)
    lines = spark.read.text(str(log)).withColumn("line_no", F.monotonically_increasing_id())
    parsed = S.parse_hdfs(lines)
    bad = parsed.where(~F.col("parse_ok")).count()
    if bad == parsed.count():
        raise DataError(
            f"{log}: no line in the HDFS layout ('yymmdd hhmmss pid LEVEL component: message')"
        )
    templated = L.assign_templates(parsed, L.mine_templates(parsed.where("parse_ok")))
    # Cached: mining is the costly step and three actions below read its result.
    keyed = S.with_session_keys(templated).cache()
    try:
        sessionless = S.sessionless_lines(keyed)
        rows = (
            S.session_features(keyed)
            .select("session_id", "window_start", "template_seq")
            .orderBy("window_start", "session_id")
            .collect()
        )
    finally:
        keyed.unpersist()
    missing = [r["session_id"] for r in rows if r["session_id"] not in block_labels]
    if missing:
        raise DataError(
            f"{labels_csv}: no label for block(s) {missing[:5]} ({len(missing)} in all)"
        )
    n_train = int(len(rows) * train_fraction)
    if n_train < 2 or n_train >= len(rows):
        raise DataError(f"{log}: {len(rows)} sessions, too few to split at {train_fraction}")
    train = [list(r["template_seq"]) for r in rows[:n_train] if block_labels[r["session_id"]] == 0]
    test = [list(r["template_seq"]) for r in rows[n_train:]]
    y = np.asarray([block_labels[r["session_id"]] for r in rows[n_train:]], dtype=np.int64)
    return {
        "data": str(log),
        "lines_unparsed": bad,
        "lines_without_session": sessionless,
        **evaluate(train, test, y, detectors),
    }


BGL_DETECTORS = tuple(DETECTORS)


def cross_fit(
    sessions: Sequence[Sequence[str]],
    labels: np.ndarray,
    detectors: Sequence[str] = BGL_DETECTORS,
    *,
    folds: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Every session scored once by detectors fitted on the *normal* sessions of the
    other folds (sessions assigned to folds at random, seeded)."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    n = len(sessions)
    fold = np.random.default_rng(seed).permutation(n) % folds
    flagged = {d: np.zeros(n, dtype=bool) for d in detectors}
    scores = {d: np.zeros(n) for d in detectors}
    for f in range(folds):
        train = [sessions[i] for i in np.flatnonzero(fold != f) if labels[i] == 0]
        test_idx = np.flatnonzero(fold == f)
        vocab = KeyVocabulary(k for s in train for k in s)
        codes_tr, codes_te = vocab.encode(train), vocab.encode([sessions[i] for i in test_idx])
        for name in detectors:
            registry_name, params = DETECTORS[name]
            det = create(registry_name, **params)
            if getattr(det, "input_kind", "") == "sequences":
                det.fit(codes_tr)
                s = det.score(codes_te)
            else:
                det.fit(count_matrix(codes_tr, vocab.size))
                s = det.score(count_matrix(codes_te, vocab.size))
            scores[name][test_idx] = s
            flagged[name][test_idx] = s > det.threshold_  # type: ignore[attr-defined]
    return {
        "sessions": n,
        "anomalous_sessions": int(labels.sum()),
        "folds": folds,
        "seed": seed,
        "detectors": {
            d: {
                "detector": DETECTORS[d][0],
                "params": DETECTORS[d][1],
                "threshold": float("nan"),
                **metrics(labels, flagged[d], scores[d]),
                "fit_s": float("nan"),
            }
            for d in detectors
        },
    }


def bgl_windows(
    spark: Any,
    directory: Path,
    *,
    window: str = "5 minutes",
    entity: tuple[str, ...] = ("component",),
    folds: int = 5,
    seed: int = 0,
    detectors: Sequence[str] = BGL_DETECTORS,
) -> dict[str, Any]:
    """loghub BGL_2k as (entity, window) sessions; a session is anomalous when any of
    its lines carries an alert label. Templates are mined from all lines (no label
    used); labels only pick the normal training sessions of the other folds."""
    from pyspark.sql import functions as F

    from lakehound.features import logs as L
    from lakehound.features import sessions as S

    log = directory / "BGL_2k.log"
    if not log.is_file():
        raise DataError(f"{log}: BGL log not found")
    lines = spark.read.text(str(log)).withColumn("line_no", F.monotonically_increasing_id())
    parsed = L.parse_bgl(lines)
    templated = L.assign_templates(parsed, L.mine_templates(parsed.where("parse_ok")))
    keyed = S.with_window_sessions(templated, window, entity=entity).cache()
    try:
        truth = keyed.groupBy("session_id").agg(F.max(F.col("is_alert").cast("int")).alias("y"))
        rows = (
            S.session_features(keyed)
            .join(truth, "session_id")
            .select("session_id", "template_seq", "y")
            .orderBy("session_id")
            .collect()
        )
        unparsed = parsed.where(~F.col("parse_ok")).count()
    finally:
        keyed.unpersist()
    seqs = [list(r["template_seq"]) for r in rows]
    y = np.asarray([int(r["y"]) for r in rows], dtype=np.int64)
    return {
        "data": str(log),
        "window": window,
        "entity": list(entity),
        "lines_unparsed": unparsed,
        **cross_fit(seqs, y, detectors, folds=folds, seed=seed),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| detector | threshold | precision | recall | F1 | ROC-AUC | fit s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in result["detectors"].items():
        # Cross-fitted runs have one threshold and fit per fold: shown as "-".
        thr = "-" if r["threshold"] != r["threshold"] else f"{r['threshold']:.4g}"
        fit = "-" if r["fit_s"] != r["fit_s"] else f"{r['fit_s']:.1f}"
        lines.append(
            f"| {name} | {thr} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['f1']:.3f} | {r.get('roc_auc', float('nan')):.3f} | {fit} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lakehound.quality.logs", description=__doc__.split("\n")[0]
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--hdfs-sessions", type=Path, help=f"directory with {TRAIN_FILE} and {TEST_FILE}"
    )
    src.add_argument("--hdfs-log", type=Path, help="raw HDFS log (needs --hdfs-labels)")
    src.add_argument("--bgl", type=Path, help="directory with loghub's BGL_2k.log")
    p.add_argument("--window", default="5 minutes", help="--bgl: session window")
    p.add_argument("--entity", default="component", help="--bgl: comma-separated entity columns")
    p.add_argument("--folds", type=int, default=5, help="--bgl: cross-fitting folds")
    p.add_argument("--hdfs-labels", type=Path, help="anomaly_label.csv for --hdfs-log")
    p.add_argument("--train-fraction", type=float, default=0.5)
    p.add_argument(
        "--detectors",
        default=",".join(DETECTORS),
        help="comma-separated subset of " + ", ".join(DETECTORS),
    )
    p.add_argument("--out", type=Path, help="write the result as JSON here")
    args = p.parse_args(argv)
    detectors = [d.strip() for d in args.detectors.split(",") if d.strip()]
    try:
        if args.hdfs_sessions is not None:
            result = hdfs_sessions(args.hdfs_sessions, detectors)
        else:
            if args.hdfs_log is not None and args.hdfs_labels is None:
                p.error("--hdfs-log needs --hdfs-labels")
            from lakehound.config import load_config
            from lakehound.session import build_session

            root = Path(__file__).resolve().parents[2]
            cfg = load_config(root / "conf" / "logs.yaml", ["spark.shuffle_partitions=2"])
            spark = build_session(cfg.spark, app_name="lakehound-quality-logs")
            try:
                if args.bgl is not None:
                    result = bgl_windows(
                        spark,
                        args.bgl,
                        window=args.window,
                        entity=tuple(c.strip() for c in args.entity.split(",") if c.strip()),
                        folds=args.folds,
                        detectors=detectors,
                    )
                else:
                    result = hdfs_raw(
                        spark,
                        args.hdfs_log,
                        args.hdfs_labels,
                        train_fraction=args.train_fraction,
                        detectors=detectors,
                    )
            finally:
                spark.stop()
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if "folds" in result:
        print(
            f"{result['sessions']} sessions ({result['anomalous_sessions']} anomalous), "
            f"{result['folds']}-fold cross-fitted on the normal ones"
        )
    else:
        print(
            f"{result['train_sessions']} training sessions, {result['test_sessions']} scored "
            f"({result['test_anomalies']} anomalous)"
        )
    print(markdown(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
