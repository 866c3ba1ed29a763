"""Online per-entity state for the ``transactions`` features: a request's events in,
their feature rows out, the same values :func:`lakehound.features.transactions.transaction_features`
computes in Spark for those events.

Each account and merchant keeps its recent events as small time-sorted column
arrays (kept for the longest window the features read). A request's events are
processed in event-time order: each one's frames end at its own row, so they
include it, exactly like Spark's range frames, and see the request's earlier
events. The work is per request, not per event: an
entity's new events are inserted in one step (after the rows of their second
already there, in arrival order), then the request's accounts (merchants) are
laid one after another in one block with their times moved apart, so every window
of every event is a row range found by one binary search and all the ranges' sums
come from one ``np.add.reduceat``. The formulas are the Spark ones, including where they
differ by entity: account windows take the sample standard deviation of the rows
(here from sums of the log amounts shifted by the entity's mean, so no
cancellation; a window of equal amounts gives exactly 0), merchant windows derive
it from the sums of 1, x and x² (:func:`lakehound.features.windows.mean_std`).

What differs from the batch features, by construction: an event with the same
second as a later-arriving one of the same account or merchant does not see it
(batch frames include ties at the row's second whatever the order), and a label
that arrives while the service runs feeds ``merchant_risk_7d`` only after a restart.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from lakehound.features.registry import feature_names
from lakehound.features.transactions import (
    _STD_FLOOR,
    DAY,
    RISK_WINDOW_DAYS,
    TX_WINDOWS,
)

# Rows of an entity's column block; the summed ones first (one reduceat slice).
AMOUNT, LOG, LOG2, SIN, COS, FRAUD, TS, MERCHANT, COUNTRY = range(9)
_WIDTH = 9
_WINDOWS = list(TX_WINDOWS)
_SECS = np.array(list(TX_WINDOWS.values()), dtype=np.float64)
_TWO_PI = 2 * math.pi

#: Column order of :meth:`TransactionState.featurize_many`'s matrix: the registry's.
FEATURES: list[str] = feature_names("transactions")
_COL = {name: k for k, name in enumerate(FEATURES)}


def epoch_seconds(ts: dt.datetime) -> int:
    """``CAST(event_ts AS LONG)`` for a naive UTC timestamp (whole seconds, floored)."""
    return calendar.timegm(ts.timetuple())


class _Entity:
    """One account's or merchant's recent events, sorted by time: ``buf[:, :n]``,
    column-major (each quantity contiguous), with spare zeroed columns after ``n``
    (so ``n`` is a valid ``reduceat`` index)."""

    __slots__ = ("buf", "n")

    def __init__(self, rows: np.ndarray | None = None) -> None:
        if rows is None:
            self.buf = np.zeros((_WIDTH, 4))
            self.n = 0
        else:
            n = rows.shape[1]
            self.buf = np.zeros((_WIDTH, n + max(4, n // 2)))
            self.buf[:, :n] = rows
            self.n = n

    @property
    def ts(self) -> np.ndarray:
        return self.buf[TS, : self.n]

    def insert(self, new: np.ndarray) -> np.ndarray:
        """Insert ``new`` (columns sorted by time, ties in arrival order), each after
        the rows of its second already there; their positions after the insert."""
        n, k = self.n, new.shape[1]
        pos = np.searchsorted(self.buf[TS, :n], new[TS], side="right")
        pos += np.arange(k)
        if pos[0] == n:  # all after the last row: the common case, an append
            if n + k >= self.buf.shape[1]:
                grown = np.zeros((_WIDTH, 2 * (n + k) + 4))
                grown[:, :n] = self.buf[:, :n]
                self.buf = grown
            self.buf[:, n : n + k] = new
        else:
            out = np.zeros((_WIDTH, max(2 * (n + k) + 4, self.buf.shape[1])))
            old = np.ones(n + k, dtype=bool)
            old[pos] = False
            out[:, : n + k][:, old] = self.buf[:, :n]
            out[:, pos] = new
            self.buf = out
        self.n = n + k
        return pos

    def prune(self, before: float) -> None:
        cut = int(np.searchsorted(self.ts, before, side="left"))
        if cut:
            self.buf = self.buf[:, cut:]
            self.n -= cut


def _sums(block: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sums of ``block[:, lo[q]:hi[q]]`` for every range q (0 for an empty one):
    (rows of ``block``) x (ranges)."""
    out = np.add.reduceat(block, _pairs(lo, hi), axis=1)[:, 0::2]
    out[:, hi <= lo] = 0.0
    return out


def _seen_before(codes: np.ndarray, lo: np.ndarray, hi: np.ndarray, want: np.ndarray) -> np.ndarray:
    """For each query q: does ``want[q]`` occur in ``codes[lo[q]:hi[q]]``?"""
    n = len(codes)
    order = np.lexsort((np.arange(n), codes))  # by code, then position
    key = codes[order] * (n + 1) + order
    at = np.searchsorted(key, want * (n + 1) + hi, side="left") - 1
    ok = at >= 0
    at = np.maximum(at, 0)
    found = order[at] if n else np.zeros_like(at)
    return ok & (n > 0) & (codes[found] == want) & (found >= lo) & (found < hi)


def _log1p(x: np.ndarray) -> np.ndarray:
    # math.log1p, as Spark's log1p: numpy's vectorised one may differ in the last bit.
    return np.array([math.log1p(v) for v in x.tolist()], dtype=np.float64)


class TransactionState:
    """The per-entity state of the ``transactions`` feature set."""

    def __init__(self, lookback_days: int, label_delay_days: int) -> None:
        self.horizon = lookback_days * DAY
        self.delay_days = label_delay_days
        # The longest frame any feature reads, back from the row.
        self.keep = max(
            self.horizon, max(TX_WINDOWS.values()), (label_delay_days + RISK_WINDOW_DAYS) * DAY
        )
        self.accounts: dict[str, _Entity] = {}
        self.merchants: dict[str, _Entity] = {}
        # Merchant ids and countries as numbers (an account's "seen before" test).
        self._codes: dict[str, int] = {}
        self.latest = 0.0
        self._inserts = 0
        self._pruned_at = 0

    def __len__(self) -> int:
        return sum(e.n for e in self.accounts.values())

    def _code(self, value: str) -> int:
        code = self._codes.get(value)
        if code is None:
            code = self._codes[value] = len(self._codes)
        return code

    def _columns(self, events: Sequence[Mapping[str, Any]], fraud: Sequence[float]) -> np.ndarray:
        """The events' state columns (``_WIDTH`` x events)."""
        cols = np.empty((_WIDTH, len(events)))
        for q, (e, f) in enumerate(zip(events, fraud, strict=True)):
            ts: dt.datetime = e["event_ts"]
            amount = float(e["amount"])
            log = math.log1p(amount)
            angle = _TWO_PI * (ts.hour + ts.minute / 60.0) / 24.0
            cols[:, q] = (
                amount,
                log,
                log * log,
                math.sin(angle),
                math.cos(angle),
                f,
                calendar.timegm(ts.timetuple()),
                self._code(str(e["merchant_id"])),
                self._code(str(e["country"])),
            )
        return cols

    def _insert(
        self, events: Sequence[Mapping[str, Any]], cols: np.ndarray
    ) -> tuple[Placed, Placed]:
        """Insert the events (in time order) into their entities; per entity: the
        entity, the events' indices and their positions in it."""
        by_acct: dict[str, list[int]] = {}
        by_merch: dict[str, list[int]] = {}
        for q, e in enumerate(events):
            by_acct.setdefault(str(e["account_id"]), []).append(q)
            by_merch.setdefault(str(e["merchant_id"]), []).append(q)
        out: list[Placed] = []
        for groups, entities in ((by_acct, self.accounts), (by_merch, self.merchants)):
            placed: Placed = {}
            for key, qs in groups.items():
                ent = entities.get(key)
                if ent is None:
                    ent = entities[key] = _Entity()
                idx = np.array(qs, dtype=np.intp)
                placed[key] = (ent, idx, ent.insert(cols[:, idx]))
            out.append(placed)
        if len(events):
            self.latest = max(self.latest, float(cols[TS].max()))
        self._inserts += len(events)
        return out[0], out[1]

    def add(self, event: Mapping[str, Any], fraud: float = 0.0) -> None:
        """Insert one validated event (contract columns, typed) into its entities' state."""
        self._insert([event], self._columns([event], [fraud]))
        self._maybe_prune()

    def _maybe_prune(self) -> None:
        if self._inserts - self._pruned_at >= 50_000:
            self.prune()

    def load(self, events: Iterable[Mapping[str, Any]], labels: Mapping[str, bool]) -> int:
        """Rebuild from history (validated and accepted events), in time order."""
        ordered = sorted(events, key=lambda e: e["event_ts"])
        fraud = [1.0 if labels.get(str(e["transaction_id"])) else 0.0 for e in ordered]
        cols = self._columns(ordered, fraud)
        # Sorted (stably) by time, each entity's rows are already in insertion order.
        for field_, entities in (("account_id", self.accounts), ("merchant_id", self.merchants)):
            groups: dict[str, list[int]] = {}
            for q, e in enumerate(ordered):
                groups.setdefault(str(e[field_]), []).append(q)
            for key, qs in groups.items():
                rows = cols[:, np.array(qs, dtype=np.intp)]
                ent = entities.get(key)
                if ent is None or ent.n == 0:
                    entities[key] = _Entity(rows)
                else:
                    ent.insert(rows)
        if ordered:
            self.latest = max(self.latest, float(cols[TS].max()))
        self._inserts += len(ordered)
        self.prune()
        return len(ordered)

    def prune(self) -> None:
        """Forget events no frame can reach any more (older than the longest frame,
        counted back from the newest event seen)."""
        self._pruned_at = self._inserts
        before = self.latest - self.keep - 1
        for entities in (self.accounts, self.merchants):
            for key in [k for k, e in entities.items() if e.n == 0 or e.ts[-1] < before]:
                del entities[key]
            for e in entities.values():
                e.prune(before)

    def featurize(self, event: Mapping[str, Any]) -> dict[str, float]:
        """Add ``event`` to the state and return its feature row (registry names)."""
        return dict(zip(FEATURES, self.featurize_many([event])[0].tolist(), strict=True))

    def featurize_many(self, events: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Add ``events`` to the state in event-time order (ties: in the given order),
        each before its features are read, and return their feature rows
        (events x :data:`FEATURES`, in the given order)."""
        k = len(events)
        out = np.empty((k, len(FEATURES)))
        if not k:
            return out
        order = sorted(range(k), key=lambda q: events[q]["event_ts"])
        ordered = [events[q] for q in order]
        cols = self._columns(ordered, [0.0] * k)
        accts, merchs = self._insert(ordered, cols)
        rows = np.empty((k, len(FEATURES)))
        self._event_features(ordered, cols, rows)
        self._account_features(*_combined(accts, cols), rows)
        self._merchant_features(*_combined(merchs, cols), rows)
        out[np.array(order, dtype=np.intp)] = rows
        self._maybe_prune()
        return out

    # -- per event, per account, per merchant -------------------------------------

    @staticmethod
    def _event_features(
        events: Sequence[Mapping[str, Any]], cols: np.ndarray, rows: np.ndarray
    ) -> None:
        rows[:, _COL["log_amount"]] = cols[LOG]
        rows[:, _COL["hour_sin"]] = cols[SIN]
        rows[:, _COL["hour_cos"]] = cols[COS]
        # Monday = 0, as (dayofweek + 5) % 7 in Spark.
        dow = [_TWO_PI * e["event_ts"].weekday() / 7.0 for e in events]
        rows[:, _COL["dow_sin"]] = [math.sin(a) for a in dow]
        rows[:, _COL["dow_cos"]] = [math.cos(a) for a in dow]

    def _account_features(
        self,
        block: np.ndarray,
        starts: np.ndarray,
        new: np.ndarray,
        pos: np.ndarray,
        q: np.ndarray,
        rows: np.ndarray,
    ) -> None:
        n = block.shape[1] - 1
        ts = block[TS, :n]
        t = new[TS]
        nw = len(_SECS)
        # Ranges: the four windows ending at the row (Spark's rangeBetween(-w, 0)),
        # then the history (t - horizon, t - 1 s].
        lo = np.searchsorted(ts, np.concatenate([*(t - s for s in _SECS), t - self.horizon]))
        hi = np.concatenate([np.tile(pos + 1, nw), np.searchsorted(ts, t - 1, side="right")])
        count = (hi - lo).astype(np.float64)
        sums = _sums(block[: COS + 1], lo, hi)
        # Sample std from sums shifted by each account's mean (no cancellation); a
        # range of equal values is exactly 0, as the two-pass formula gives.
        logs = block[LOG]
        sizes = np.diff(np.append(starts, n))
        y = np.zeros(n + 1)
        y[:n] = logs[:n] - np.repeat(np.add.reduceat(logs[:n], starts) / sizes, sizes)
        ys = _sums(np.vstack([y, y * y]), lo, hi)
        pairs = _pairs(lo, hi)
        spread = np.maximum.reduceat(logs, pairs)[0::2] - np.minimum.reduceat(logs, pairs)[0::2]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = sums[LOG] / count
            var = np.maximum((ys[1] - ys[0] * ys[0] / count) / (count - 1), 0.0)
        std = np.where((count >= 2) & (spread > 0), np.sqrt(var), 0.0)
        amount_sum = _log1p(sums[AMOUNT])
        k = len(t)
        for w_i, w in enumerate(_WINDOWS):
            r = slice(w_i * k, (w_i + 1) * k)
            for name, values in (
                (f"acct_count_{w}", count[r]),
                (f"acct_amount_sum_{w}", amount_sum[r]),
                (f"acct_amount_mean_{w}", mean[r]),
                (f"acct_amount_std_{w}", std[r]),
            ):
                col = _COL.get(name)
                if col is not None:
                    rows[q, col] = values
        h = slice(nw * k, (nw + 1) * k)
        n_hist, mean_h, std_h = count[h], mean[h], std[h]
        log_amount = new[LOG]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (log_amount - mean_h) / np.maximum(std_h, _STD_FLOOR)
        rows[q, _COL["acct_amount_z_30d"]] = np.where(n_hist >= 3, z, 0.0)
        # The 30-day std read by the models is the history's (legacy name).
        rows[q, _COL["acct_amount_std_30d"]] = std_h
        lo_h, hi_h = lo[h], hi[h]
        prev = block[TS, np.maximum(hi_h - 1, 0)]
        since = np.where(hi_h > lo_h, t - prev, float(self.horizon))
        rows[q, _COL["acct_secs_since_prev"]] = _log1p(since)
        for name, c in (("acct_new_merchant", MERCHANT), ("acct_new_country", COUNTRY)):
            codes = block[c, :n].astype(np.int64)
            seen = _seen_before(codes, lo_h, hi_h, new[c].astype(np.int64))
            rows[q, _COL[name]] = np.where(seen, 0.0, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            hs, hc = sums[SIN, h] / n_hist, sums[COS, h] / n_hist
            dev = 1.0 - (new[SIN] * hs + new[COS] * hc)
        rows[q, _COL["acct_hour_deviation"]] = np.where(n_hist >= 3, dev, 0.0)

    def _merchant_features(
        self,
        block: np.ndarray,
        starts: np.ndarray,
        new: np.ndarray,
        pos: np.ndarray,
        q: np.ndarray,
        rows: np.ndarray,
    ) -> None:
        n = block.shape[1] - 1
        ts = block[TS, :n]
        t = new[TS]
        nw = len(_SECS)
        delay = self.delay_days * DAY if self.delay_days > 0 else 1
        # Ranges: the four windows ending at the row, the 7 days before the row's
        # second [t - 7 d, t - 1 s], the labelled risk window.
        lo = np.searchsorted(
            ts,
            np.concatenate(
                [
                    *(t - s for s in _SECS),
                    t - 7 * DAY,
                    t - (self.delay_days + RISK_WINDOW_DAYS) * DAY + 1,
                ]
            ),
        )
        hi = np.concatenate(
            [
                np.tile(pos + 1, nw),
                np.searchsorted(ts, t - 1, side="right"),
                np.searchsorted(ts, t - delay, side="right"),
            ]
        )
        count = np.maximum(hi - lo, 0).astype(np.float64)
        sums = _sums(block[: FRAUD + 1], lo, hi)
        s, ss = sums[LOG], sums[LOG2]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = s / count
            std = np.where(
                count >= 2, np.sqrt(np.maximum((ss - s * s / count) / (count - 1), 0.0)), 0.0
            )
        amount_sum = _log1p(sums[AMOUNT, : nw * len(t)])
        k = len(t)
        for w_i, w in enumerate(_WINDOWS):
            r = slice(w_i * k, (w_i + 1) * k)
            for name, values in (
                (f"merchant_count_{w}", count[r]),
                (f"merchant_amount_sum_{w}", amount_sum[r]),
                (f"merchant_amount_mean_{w}", mean[r]),
                (f"merchant_amount_std_{w}", std[r]),
            ):
                col = _COL.get(name)
                if col is not None:
                    rows[q, col] = values
        h = slice(nw * k, (nw + 1) * k)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (new[LOG] - mean[h]) / np.maximum(std[h], _STD_FLOOR)
        rows[q, _COL["merchant_amount_z_7d"]] = np.where(count[h] >= 3, z, 0.0)
        r = slice((nw + 1) * k, (nw + 2) * k)
        with np.errstate(divide="ignore", invalid="ignore"):
            risk = sums[FRAUD, r] / count[r]
        rows[q, _COL["merchant_risk_7d"]] = np.where(count[r] > 0, risk, 0.0)


# Times of the k-th entity of a request, moved on by k * _GAP seconds in the
# combined block: no window reaches from one entity's rows into another's, and
# the times stay exact integers in a double.
_GAP = float(2**36)

Placed = dict[str, tuple[_Entity, np.ndarray, np.ndarray]]


def _combined(
    placed: Placed, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A request's entities as one block (their rows one after another, the
    times moved apart by ``_GAP``, a zero column after the last), so every
    window of every entity is found and summed by one numpy call each: the
    block, each entity's first row, the events' columns (times moved the same
    way), their positions in the block, their indices in the request."""
    parts = list(placed.values())
    if len(parts) == 1:
        ent, q, pos = parts[0]
        return ent.buf[:, : ent.n + 1], np.zeros(1, np.intp), cols[:, q], pos, q
    sizes = np.array([ent.n for ent, _, _ in parts], dtype=np.intp)
    starts = np.concatenate([[0], np.cumsum(sizes[:-1])]).astype(np.intp)
    total = int(sizes.sum())
    block = np.zeros((_WIDTH, total + 1))
    for (ent, _, _), s in zip(parts, starts.tolist(), strict=True):
        block[:, s : s + ent.n] = ent.buf[:, : ent.n]
    gap = np.arange(len(parts)) * _GAP
    block[TS, :total] += np.repeat(gap, sizes)
    counts = np.array([len(qs) for _, qs, _ in parts], dtype=np.intp)
    q = np.concatenate([qs for _, qs, _ in parts])
    pos = np.concatenate([p for _, _, p in parts]) + np.repeat(starts, counts)
    new = cols[:, q]
    new[TS] += np.repeat(gap, counts)
    return block, starts, new, pos, q


def _pairs(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    idx = np.empty(2 * len(lo), dtype=np.intp)
    idx[0::2] = lo
    idx[1::2] = hi
    return idx
