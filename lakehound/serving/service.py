"""The endpoint's work, without HTTP: check, featurize, score, log, answer.

One :class:`Service` per process. A request's events are checked with the
contract rules (:mod:`lakehound.serving.events`), featurized over the online
state (:mod:`lakehound.serving.online`), scored by the library's scoring core
(:func:`lakehound.scoring.score_pandas`) and written to the write-ahead log
(:mod:`lakehound.serving.wal`) before the answer. In the background, closed log
segments go to Delta (``stream_events``, ``scores``, ``alerts``, ``quarantine``)
through the stream's insert-only MERGE, and the registry is polled for a newly
promoted model version, which replaces the ensemble between two requests.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StructField, StructType

from lakehound import io, models
from lakehound.cli import RunContext
from lakehound.config import Config
from lakehound.errors import ConfigError
from lakehound.features.build import lookback_days, source_of
from lakehound.features.registry import feature_names, registry_version
from lakehound.scoring import (
    BatchScores,
    Member,
    load_members,
    score_pandas,
    to_alerts,
    to_scores,
    wide_frame,
)
from lakehound.scoring.core import DetectorScores
from lakehound.serving import events
from lakehound.serving.online import FEATURES, TransactionState
from lakehound.serving.wal import WriteAheadLog, read_segment
from lakehound.streaming.process import STREAM_EVENTS
from lakehound.streaming.sinks import merge_insert
from schemas.base import Contract
from schemas.outputs import QUARANTINE
from schemas.registry import get_contract

log = logging.getLogger("lakehound.serve")
# Where a quarantined event came from, in quarantine.source_file.
SOURCE_PREFIX = "serve:"


@dataclass(frozen=True)
class Item:
    """One event of a request: its fields (None: not a record) and its raw text."""

    fields: dict[str, Any] | None
    raw: str


class _Scored:
    """One detector's scores as Python lists (one conversion per request, not per field)."""

    __slots__ = ("explanation", "is_anomaly", "raw", "severity")

    def __init__(self, d: DetectorScores) -> None:
        self.raw: list[float] = np.asarray(d.raw, dtype=np.float64).tolist()
        self.severity: list[float] = np.asarray(d.severity, dtype=np.float64).tolist()
        self.is_anomaly: list[bool] = np.asarray(d.is_anomaly, dtype=bool).tolist()
        self.explanation = d.explanation


class _ScoredRows:
    """A request's :class:`BatchScores` as Python values, row by row."""

    def __init__(self, scores: BatchScores, members: list[Member]) -> None:
        self.scores = scores
        self.members = members
        self.detectors = [(m.id, _Scored(scores.detectors[m.id])) for m in members]
        self.severity: list[float] = np.asarray(scores.severity, dtype=np.float64).tolist()
        self.is_alert: list[bool] = np.asarray(scores.is_alert, dtype=bool).tolist()


def wal_dir(cfg: Config) -> Path:
    return Path(cfg.serve.wal_dir or Path(io.table_path(cfg, "_serve")) / "wal")


def _clean(x: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


class Service:
    def __init__(self, spark: SparkSession, cfg: Config) -> None:
        if source_of(cfg) != "transactions":
            raise ConfigError(
                f"serve: features.source '{source_of(cfg)}' has no online features yet "
                "(the endpoint serves the 'transactions' feature set)"
            )
        self.spark = spark
        self.cfg = cfg
        self.contract: Contract = get_contract(cfg.validation.contract)
        self.source = source_of(cfg)
        self.features = feature_names(self.source)
        self.registry_version = registry_version(self.source)
        self.key = self.contract.key[0]
        self._columns = pd.Index(self.features)
        if self.features != FEATURES:
            raise ConfigError("serve: the online state's feature order is not the registry's")
        self.state = TransactionState(cfg.features.lookback_days, cfg.features.label_delay_days)
        self.seen: set[str] = set()
        self.members: list[Member] = []
        self.healthy = False
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.wal: WriteAheadLog | None = None
        self._flushed_at = time.monotonic()

    # -- start and stop -------------------------------------------------------

    def start(self, background: bool = True) -> None:
        """Replay what the log holds into Delta, rebuild the state, load the models."""
        t0 = time.perf_counter()
        self.wal = WriteAheadLog(wal_dir(self.cfg))
        replayed = self._write_segments(self.wal.rotate())
        self.members = _warmed(load_members(self.spark, self.cfg))
        loaded = self._rebuild_state()
        self.healthy = True
        log.info(
            "serve ready in %.1fs: %d logged events replayed, %d history events in state, "
            "models %s",
            time.perf_counter() - t0,
            replayed,
            loaded,
            self.model_version,
        )
        if background:
            for target in (self._flush_loop, self._refresh_loop):
                th = threading.Thread(target=target, daemon=True, name=target.__name__)
                th.start()
                self._threads.append(th)

    def close(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(timeout=60)
        if self.wal is not None:
            self.flush()
            self.wal.close()

    @property
    def model_version(self) -> str:
        return ",".join(m.model.version for m in self.members)

    def _rebuild_state(self) -> int:
        spark, cfg = self.spark, self.cfg
        cols = self.contract.column_names
        frames = [
            io.read_table(spark, cfg, t).select(*cols)
            for t in ("validated", STREAM_EVENTS)
            if io.table_exists(spark, cfg, t)
        ]
        if not frames:
            return 0
        rows = frames[0]
        for f in frames[1:]:
            rows = rows.unionByName(f)
        latest = rows.agg(F.max("event_ts")).first()
        if latest is None or latest[0] is None:
            return 0
        since = latest[0] - dt.timedelta(days=lookback_days(cfg), seconds=1)
        key = self.contract.key[0]
        history = rows.where(F.col("event_ts") >= F.lit(since)).dropDuplicates([key])
        labels: dict[str, bool] = {}
        lab = io.event_labels(spark, cfg)
        if lab is not None:
            # Only labels of the history's events can feed a window.
            ids = history.select(F.col(key).alias("event_id"))
            labels = {
                str(r["event_id"]): bool(r["is_anomaly"])
                for r in lab.join(ids, "event_id", "left_semi")
                .select("event_id", "is_anomaly")
                .collect()
            }
        records = [r.asDict() for r in history.collect()]
        self.seen.update(str(r[key]) for r in records)
        return self.state.load(records, labels)

    # -- requests -------------------------------------------------------------

    def invoke(self, items: list[Item], with_features: bool = False) -> list[dict[str, Any]]:
        """One answer per item, in order: a scored event or the reasons it was refused."""
        started = time.perf_counter()
        now = dt.datetime.now(dt.UTC)
        request_id = uuid.uuid4().hex[:16]
        key = self.contract.key[0]
        results: list[dict[str, Any]] = [{} for _ in items]
        records: list[dict[str, Any]] = []
        with self._lock:
            members = self.members
            accepted: list[tuple[int, events.Checked]] = []
            for i, item in enumerate(items):
                c = events.check(
                    item.fields, item.raw, self.contract, self.cfg.validation, now, self.seen
                )
                if c.ok:
                    self.seen.add(str(c.values[key]))
                    accepted.append((i, c))
                    continue
                results[i] = {
                    "index": i,
                    "event_id": _clean(c.values.get(key)),
                    "error": "invalid event",
                    "reasons": c.reasons,
                }
                records.append(self._quarantine_record(c, f"{request_id}:{i}", now))
            # In event-time order, as the batch frames see a request's events (the
            # state reads them in that order too, each entity's in one step).
            accepted.sort(key=lambda ic: ic[1].values["event_ts"])
            if accepted:
                matrix = self.state.featurize_many([c.values for _, c in accepted])
                # One float block: pandas wraps it without a per-column pass.
                frame = pd.DataFrame(matrix, columns=self._columns, copy=False)
                scored = score_pandas(frame, members, self.cfg)
                view = _ScoredRows(scored, members)
                feats = matrix.tolist() if with_features else None
                for row, (i, c) in enumerate(accepted):
                    results[i] = self._result(c, row, view, feats[row] if feats else None)
                    records.append(self._event_record(c, row, view))
            assert self.wal is not None
            self.wal.append(records)
        latency = round((time.perf_counter() - started) * 1000.0, 3)
        for r in results:
            if "severity" in r:
                r["latency_ms"] = latency
        return results

    def _result(
        self, c: events.Checked, row: int, s: _ScoredRows, feats: list[float] | None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event_id": c.values[self.key],
            "severity": s.severity[row],
            "alert": s.is_alert[row],
            "detectors": {
                m: {
                    "severity": d.severity[row],
                    "raw_score": _clean(d.raw[row]),
                    "is_anomaly": d.is_anomaly[row],
                }
                for m, d in s.detectors
            },
            "explanation": [
                {"feature": f, "value": _clean(v), "contribution": _clean(ct), "method": m}
                for f, v, ct, m in s.scores.explanation[row]
            ],
            "contributions": s.scores.contributions[row],
            "model_version": s.scores.model_version,
            "feature_registry_version": self.registry_version,
        }
        if feats is not None:
            out["features"] = {k: _clean(v) for k, v in zip(self.features, feats, strict=True)}
        return out

    def _event_record(self, c: events.Checked, row: int, s: _ScoredRows) -> dict[str, Any]:
        v = c.values
        return {
            "kind": "event",
            "event": {
                k: (x.isoformat() if isinstance(x, dt.datetime) else x) for k, x in v.items()
            },
            "detectors": [
                {
                    "id": m,
                    "version": member.model.version,
                    "threshold": member.threshold,
                    "raw": _clean(d.raw[row]),
                    "severity": d.severity[row],
                    "is_anomaly": d.is_anomaly[row],
                    "explanation": d.explanation[row],
                }
                for (m, d), member in zip(s.detectors, s.members, strict=True)
            ],
            "severity": s.severity[row],
            "contributions": s.scores.contributions[row],
            "explanation": s.scores.explanation[row],
            "flagged_by": s.scores.flagged_by[row],
        }

    def _quarantine_record(self, c: events.Checked, where: str, now: dt.datetime) -> dict[str, Any]:
        ts = c.values.get(self.contract.event_time or "")
        filed = ts.date() if isinstance(ts, dt.datetime) else now.date()
        return {
            "kind": "quarantine",
            "raw_record": c.raw,
            "reasons": c.reasons,
            "source_file": SOURCE_PREFIX + where,
            "event_date": filed.isoformat(),
            "at": now.replace(tzinfo=None).isoformat(),
        }

    # -- background: log -> Delta, model refresh --------------------------------

    def flush(self) -> int:
        """Close the open log segment and write every closed one to Delta."""
        assert self.wal is not None
        with self._flush_lock:
            return self._write_segments(self.wal.rotate())

    def _flush_loop(self) -> None:
        while not self._stop.wait(min(self.cfg.serve.flush_seconds, 1.0)):
            assert self.wal is not None
            due = time.monotonic() - self._flushed_at
            if self.wal.pending >= self.cfg.serve.segment_events or (
                self.wal.pending and due >= self.cfg.serve.flush_seconds
            ):
                try:
                    self.flush()
                except Exception:
                    log.exception("writing the log to Delta failed; will retry")
                self._flushed_at = time.monotonic()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.cfg.serve.refresh_seconds):
            try:
                self.refresh_models()
            except Exception:
                log.exception("model refresh failed; still serving %s", self.model_version)

    def refresh_models(self) -> bool:
        """Load the ensemble again if the registry's production versions changed."""
        cfg = self.cfg
        versions = ",".join(
            models.resolve(self.spark, cfg, d.id, cfg.scoring.model_version).version
            for d in cfg.scoring.detectors
        )
        if versions == self.model_version:
            return False
        # Loaded (checksums verified) and warmed outside the request lock; swapped in
        # one step.
        members = _warmed(load_members(self.spark, cfg))
        with self._lock:
            self.members = members
        log.info("serving model versions %s", self.model_version)
        return True

    def _write_segments(self, paths: list[Path]) -> int:
        n = 0
        for path in paths:
            n += self._write_records(list(read_segment(path)), path.stem)
            path.unlink()
        return n

    def _write_records(self, records: list[dict[str, Any]], run: str) -> int:
        spark, cfg = self.spark, self.cfg
        evts = [r for r in records if r["kind"] == "event"]
        bad = [r for r in records if r["kind"] == "quarantine"]
        ctx = RunContext(job="serve", date=None, run_id=f"serve-{run}")
        if bad:
            q = pd.DataFrame(
                {
                    "raw_record": [r["raw_record"] for r in bad],
                    "reasons": [r["reasons"] for r in bad],
                    "run_id": ctx.run_id,
                    "source_file": [r["source_file"] for r in bad],
                    "event_date": [dt.date.fromisoformat(r["event_date"]) for r in bad],
                    "quarantined_at": [dt.datetime.fromisoformat(r["at"]) for r in bad],
                }
            )
            df = spark.createDataFrame(q, QUARANTINE.schema())
            merge_insert(df, cfg, "quarantine", dates=sorted(set(q["event_date"])))
        if not evts:
            return len(bad)
        schema = StructType([*self.contract.schema().fields, StructField(io.DATE_COL, DateType())])
        rows = []
        for r in evts:
            e = dict(r["event"])
            e["event_ts"] = dt.datetime.fromisoformat(e["event_ts"])
            rows.append((*[e[c] for c in self.contract.column_names], e["event_ts"].date()))
        accepted = spark.createDataFrame(rows, schema)
        dates = sorted({row[-1] for row in rows})
        merge_insert(accepted, cfg, STREAM_EVENTS, dates=dates)
        # Scores and alerts per ensemble the events were scored with (a promotion
        # between two requests gives two groups).
        groups: dict[tuple[tuple[str, str, float], ...], list[dict[str, Any]]] = defaultdict(list)
        for r in evts:
            sig = tuple((d["id"], d["version"], d["threshold"]) for d in r["detectors"])
            groups[sig].append(r)
        for sig, group in groups.items():
            members = [_logged_member(i, v, t) for i, v, t in sig]
            keys = pd.DataFrame(
                {
                    "event_id": [g["event"]["transaction_id"] for g in group],
                    "entity_id": [g["event"]["account_id"] for g in group],
                    "event_ts": [dt.datetime.fromisoformat(g["event"]["event_ts"]) for g in group],
                    io.DATE_COL: [
                        dt.datetime.fromisoformat(g["event"]["event_ts"]).date() for g in group
                    ],
                }
            )
            wide = wide_frame(spark, keys, _logged_scores(group, members, cfg), members)
            merge_insert(to_scores(wide, members, cfg, ctx), cfg, "scores", dates=dates)
            merge_insert(to_alerts(wide, members, cfg, ctx), cfg, "alerts", dates=dates)
        log.info("wrote %d logged events, %d quarantined to Delta (%s)", len(evts), len(bad), run)
        return len(records)


def _warmed(members: list[Member]) -> list[Member]:
    """``members`` after one attribution of one row each: what a detector builds on
    first use (the Isolation Forest's tree tables, TreeSHAP's explainer: seconds)
    is built before the first request, not in the first alert's answer."""
    for m in members:
        if m.bundle is None:
            continue
        try:
            m.bundle.explain(m.bundle.fill_values[None, :])
        except Exception as exc:  # e.g. scores rows in sequence: nothing to warm
            log.debug("no warm-up attribution for %s: %s", m.id, exc)
    return members


def _logged_member(member_id: str, version: str, threshold: float) -> Member:
    """A member as the log recorded it: enough for to_scores / to_alerts."""
    model = models.RegisteredModel(version, member_id, [], "", "", "production")

    def _no_attach(df: Any) -> Any:
        raise RuntimeError("a logged member cannot score")

    return Member(member_id, model, 1.0, threshold, _no_attach)


def _logged_scores(group: list[dict[str, Any]], members: list[Member], cfg: Config) -> BatchScores:
    def nan(x: Any) -> float:
        return math.nan if x is None else float(x)

    detectors = {
        m.id: DetectorScores(
            raw=np.array([nan(g["detectors"][k]["raw"]) for g in group]),
            severity=np.array([g["detectors"][k]["severity"] for g in group]),
            is_anomaly=np.array([g["detectors"][k]["is_anomaly"] for g in group], dtype=bool),
            explanation=[[tuple(e) for e in g["detectors"][k]["explanation"]] for g in group],
        )
        for k, m in enumerate(members)
    }
    severity = np.array([g["severity"] for g in group])
    return BatchScores(
        detectors=detectors,
        severity=severity,
        is_alert=severity >= cfg.scoring.alert_severity,
        contributions=[g["contributions"] for g in group],
        explanation=[[tuple(e) for e in g["explanation"]] for g in group],
        flagged_by=[g["flagged_by"] for g in group],
        model_version=",".join(m.model.version for m in members),
    )
