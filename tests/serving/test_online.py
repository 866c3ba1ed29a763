"""The endpoint's online features, computed per request and per entity
(:meth:`TransactionState.featurize_many`), equal the per-event state they replaced
(``online_reference``: one event at a time, the path the integration test proved
against batch ``featurize``) on generated events: ties at the same second,
out-of-order arrivals, equal amounts, labelled history, requests of 1 to 400 events."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import numpy as np
import pytest

from lakehound.serving.online import FEATURES, TransactionState
from tests.serving.online_reference import TransactionState as ReferenceState

START = dt.datetime(2024, 1, 1)
# Counts, flags and anything without a sum: exactly equal.
EXACT = [
    n
    for n in FEATURES
    if "count" in n or n.startswith(("acct_new", "hour_", "dow_")) or n == "log_amount"
]


def _events(
    rnd: random.Random, n: int, start: dt.datetime, days: float, tag: str, accounts: int = 12
) -> list[dict[str, Any]]:
    out = []
    for k in range(n):
        # Few entities (long windows), whole-minute times (many same-second ties).
        ts = start + dt.timedelta(minutes=rnd.randrange(int(days * 24 * 60)))
        amount = (
            rnd.choice([10.0, 10.0, 25.5])
            if rnd.random() < 0.3
            else round(rnd.lognormvariate(3, 1.2), 2)
        )
        out.append(
            {
                "transaction_id": f"{tag}-{k}",
                "account_id": f"a{rnd.randrange(accounts)}",
                "merchant_id": f"m{rnd.randrange(6)}",
                "country": rnd.choice(["DE", "FR", "FR", "NL"]),
                "amount": amount,
                "event_ts": ts,
            }
        )
    return out


def _reference_rows(state: ReferenceState, events: list[dict[str, Any]]) -> np.ndarray:
    # As the service did: the request's events in time order (stable), one by one.
    order = sorted(range(len(events)), key=lambda q: events[q]["event_ts"])
    rows = np.empty((len(events), len(FEATURES)))
    for q in order:
        f = state.featurize(events[q])
        assert set(f) == set(FEATURES)
        rows[q] = [f[c] for c in FEATURES]
    return rows


@pytest.mark.parametrize(("lookback", "delay"), [(30, 3), (10, 0)])
def test_featurize_many_equals_per_event_state(lookback: int, delay: int) -> None:
    rnd = random.Random(lookback * 100 + delay)
    history = _events(rnd, 1500, START, 40, "h")
    labels = {e["transaction_id"]: rnd.random() < 0.1 for e in history}
    new, ref = TransactionState(lookback, delay), ReferenceState(lookback, delay)
    assert new.load(history, labels) == ref.load(history, labels) == len(history)
    assert len(new) == len(ref)
    t0 = START + dt.timedelta(days=40)
    for r, size in enumerate([1, 1, 7, 400, 1, 60, 3, 250, 1, 1, 120]):
        # Mostly after the history, some late arrivals (earlier than events seen).
        days_back = 5 if r % 3 == 0 else 0
        # Request 7 brings accounts never seen, beside known ones.
        accounts = 30 if r == 7 else 12
        events = _events(rnd, size, t0 - dt.timedelta(days=days_back), 2, f"r{r}", accounts)
        if size > 5:
            events[1] = {**events[0], "transaction_id": f"r{r}-tie", "amount": 10.0}
        if r == 5:
            new.prune()
            ref.prune()
        got = new.featurize_many(events)
        want = _reference_rows(ref, events)
        cols = [FEATURES.index(c) for c in EXACT]
        np.testing.assert_array_equal(got[:, cols], want[:, cols])
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
        assert np.isfinite(got).all()
        t0 += dt.timedelta(days=1)
    assert len(new) == len(ref)


def test_single_event_dict_and_empty_request() -> None:
    rnd = random.Random(7)
    history = _events(rnd, 300, START, 10, "h")
    new, ref = TransactionState(30, 3), ReferenceState(30, 3)
    new.load(history, {})
    ref.load(history, {})
    event = _events(rnd, 1, START + dt.timedelta(days=10), 1, "x")[0]
    got, want = new.featurize(event), ref.featurize(event)
    assert list(got) == FEATURES
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)
    assert new.featurize_many([]).shape == (0, len(FEATURES))
    # An account and merchant never seen: the state starts them.
    fresh = {**event, "transaction_id": "y", "account_id": "new", "merchant_id": "new"}
    assert new.featurize(fresh) == pytest.approx(ref.featurize(fresh), rel=1e-9, abs=1e-9)
