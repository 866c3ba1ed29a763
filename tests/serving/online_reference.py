"""The per-event online state as it was before vectorisation (lakehound.serving.online
at a5ad8b5), one event at a time: the expected values of test_online.py."""

from __future__ import annotations

import calendar
import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lakehound.features.transactions import (
    _LEGACY,
    _STD_FLOOR,
    DAY,
    RISK_WINDOW_DAYS,
    TX_WINDOWS,
)

# Columns of an entity's event array.
TS, AMOUNT, LOG, SIN, COS, FRAUD = range(6)
_WIDTH = 6


def epoch_seconds(ts: dt.datetime) -> int:
    """``CAST(event_ts AS LONG)`` for a naive UTC timestamp (whole seconds, floored)."""
    return calendar.timegm(ts.timetuple())


@dataclass
class _Entity:
    """One account's or merchant's recent events, sorted by time."""

    rows: np.ndarray = field(default_factory=lambda: np.empty((0, _WIDTH)))
    # Per row (same order): the other entity's id and the country (accounts only).
    tags: list[tuple[str, str]] = field(default_factory=list)

    def insert(self, row: np.ndarray, tag: tuple[str, str]) -> None:
        # After any rows of the same second: order among ties changes no sum.
        pos = int(np.searchsorted(self.rows[:, TS], row[TS], side="right"))
        self.rows = np.insert(self.rows, pos, row, axis=0)
        self.tags.insert(pos, tag)

    def prune(self, before: float) -> None:
        cut = int(np.searchsorted(self.rows[:, TS], before, side="left"))
        if cut:
            self.rows = self.rows[cut:]
            del self.tags[:cut]

    def span(self, lo: float, hi: float) -> tuple[int, int]:
        """Row range with ``lo <= ts <= hi``."""
        ts = self.rows[:, TS]
        return int(np.searchsorted(ts, lo, side="left")), int(np.searchsorted(ts, hi, "right"))


def _z(value: float, mean: float | None, std: float | None, n: int) -> float:
    if n < 3 or mean is None:
        return 0.0
    return (value - mean) / max(std if std is not None else 0.0, _STD_FLOOR)


def _sample_std(x: np.ndarray) -> float | None:
    return float(np.std(x, ddof=1)) if len(x) >= 2 else None


def _mean_std(n: float, s: float, ss: float) -> tuple[float | None, float]:
    """:func:`lakehound.features.windows.mean_std` on plain floats."""
    mean = s / n if n > 0 else None
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(max((ss - s * s / n) / (n - 1), 0.0))


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
        self.latest = 0.0
        self._inserts = 0

    def __len__(self) -> int:
        return sum(len(e.rows) for e in self.accounts.values())

    def _row(self, ts: dt.datetime, amount: float, fraud: float) -> np.ndarray:
        angle = 2 * math.pi * (ts.hour + ts.minute / 60.0) / 24.0
        return np.array(
            [epoch_seconds(ts), amount, math.log1p(amount), math.sin(angle), math.cos(angle), fraud]
        )

    def add(self, event: Mapping[str, Any], fraud: float = 0.0) -> None:
        """Insert one validated event (contract columns, typed) into its entities' state."""
        row = self._row(event["event_ts"], float(event["amount"]), fraud)
        merchant, country = str(event["merchant_id"]), str(event["country"])
        self.accounts.setdefault(str(event["account_id"]), _Entity()).insert(
            row, (merchant, country)
        )
        self.merchants.setdefault(merchant, _Entity()).insert(row, ("", ""))
        self.latest = max(self.latest, float(row[TS]))
        self._inserts += 1
        if self._inserts % 50_000 == 0:
            self.prune()

    def load(self, events: Iterable[Mapping[str, Any]], labels: Mapping[str, bool]) -> int:
        """Rebuild from history (validated and accepted events), in time order."""
        n = 0
        for e in sorted(events, key=lambda e: e["event_ts"]):
            self.add(e, 1.0 if labels.get(str(e["transaction_id"])) else 0.0)
            n += 1
        self.prune()
        return n

    def prune(self) -> None:
        """Forget events no frame can reach any more (older than the longest frame,
        counted back from the newest event seen)."""
        before = self.latest - self.keep - 1
        for entities in (self.accounts, self.merchants):
            for key in [k for k, e in entities.items() if e.rows[-1, TS] < before]:
                del entities[key]
            for e in entities.values():
                e.prune(before)

    def featurize(self, event: Mapping[str, Any]) -> dict[str, float]:
        """Add ``event`` to the state and return its feature row (registry names)."""
        self.add(event)
        return self.features_of(event)

    def features_of(self, event: Mapping[str, Any]) -> dict[str, float]:
        """The features of an event already in the state."""
        ts: dt.datetime = event["event_ts"]
        t = float(epoch_seconds(ts))
        amount = float(event["amount"])
        log_amount = math.log1p(amount)
        acct = self.accounts[str(event["account_id"])]
        merch = self.merchants[str(event["merchant_id"])]
        out: dict[str, float] = {"log_amount": log_amount}

        a = acct.rows
        # Account windows ending at the row (Spark frames rangeBetween(-w, 0)).
        grid: dict[str, float] = {}
        for w, secs in TX_WINDOWS.items():
            i, j = acct.span(t - secs, t)
            logs = a[i:j, LOG]
            grid[f"acct_count_{w}"] = float(j - i)
            grid[f"acct_amount_sum_{w}"] = math.log1p(float(np.sum(a[i:j, AMOUNT])))
            grid[f"acct_amount_mean_{w}"] = float(np.mean(logs))
            grid[f"acct_amount_std_{w}"] = _sample_std(logs) or 0.0
        out["acct_count_1h"] = grid["acct_count_1h"]
        out["acct_count_1d"] = grid["acct_count_1d"]
        out["acct_count_7d"] = grid["acct_count_7d"]
        out["acct_amount_sum_1d"] = grid["acct_amount_sum_1d"]

        # The account's history: (t - horizon, t - 1 s].
        i, j = acct.span(t - self.horizon, t - 1)
        n_hist = j - i
        hist_logs = a[i:j, LOG]
        mean_hist = float(np.mean(hist_logs)) if n_hist else None
        std_hist = _sample_std(hist_logs)
        out["acct_amount_z_30d"] = _z(log_amount, mean_hist, std_hist, n_hist)
        out["acct_amount_std_30d"] = std_hist if std_hist is not None else 0.0
        since = t - float(a[j - 1, TS]) if n_hist else float(self.horizon)
        out["acct_secs_since_prev"] = math.log1p(since)
        merchant, country = str(event["merchant_id"]), str(event["country"])
        past = acct.tags[i:j]
        out["acct_new_merchant"] = 0.0 if any(m == merchant for m, _ in past) else 1.0
        out["acct_new_country"] = 0.0 if any(c == country for _, c in past) else 1.0
        angle = 2 * math.pi * (ts.hour + ts.minute / 60.0) / 24.0
        if n_hist >= 3:
            hs, hc = float(np.mean(a[i:j, SIN])), float(np.mean(a[i:j, COS]))
            out["acct_hour_deviation"] = 1.0 - (math.sin(angle) * hs + math.cos(angle) * hc)
        else:
            out["acct_hour_deviation"] = 0.0

        m = merch.rows

        def sums(lo: float, hi: float) -> tuple[float, float, float, float, float]:
            i, j = merch.span(t + lo, t + hi)
            logs = m[i:j, LOG]
            return (
                float(j - i),
                float(np.sum(m[i:j, AMOUNT])),
                float(np.sum(logs)),
                float(np.sum(logs * logs)),
                float(np.sum(m[i:j, FRAUD])),
            )

        mgrid: dict[str, float] = {}
        for w, secs in TX_WINDOWS.items():
            n, amt, s, ss, _ = sums(-secs, 0)
            mean, std = _mean_std(n, s, ss)
            mgrid[f"merchant_count_{w}"] = n
            mgrid[f"merchant_amount_sum_{w}"] = math.log1p(amt)
            mgrid[f"merchant_amount_mean_{w}"] = mean if mean is not None else math.nan
            mgrid[f"merchant_amount_std_{w}"] = std
        out["merchant_count_1d"] = mgrid["merchant_count_1d"]
        n7, _, s7, ss7, _ = sums(-7 * DAY, -1)
        mean7, std7 = _mean_std(n7, s7, ss7)
        out["merchant_amount_z_7d"] = _z(log_amount, mean7, std7 if n7 >= 2 else None, int(n7))
        out["hour_sin"] = math.sin(angle)
        out["hour_cos"] = math.cos(angle)
        dow = ts.weekday()  # Monday = 0, as (dayofweek + 5) % 7 in Spark
        out["dow_sin"] = math.sin(2 * math.pi * dow / 7.0)
        out["dow_cos"] = math.cos(2 * math.pi * dow / 7.0)
        for name, value in (*grid.items(), *mgrid.items()):
            if name not in _LEGACY:
                out.setdefault(name, value)
        delay = self.delay_days * DAY if self.delay_days > 0 else 1
        rn, _, _, _, fraud = sums(-(self.delay_days + RISK_WINDOW_DAYS) * DAY + 1, -delay)
        out["merchant_risk_7d"] = fraud / rn if rn > 0 else 0.0
        return out
