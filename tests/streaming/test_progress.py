"""What the running stream reports about itself while a micro-batch is in progress."""

from __future__ import annotations

from collections.abc import Callable

from lakehound.config import Config
from lakehound.streaming.batch import BatchScorer
from lakehound.streaming.progress import slow_batch
from schemas.transactions import TRANSACTIONS


def test_no_line_between_batches_or_for_a_batch_of_usual_length() -> None:
    assert slow_batch(None, [30.0, 30.0], now=1_000.0) is None
    # Started 100 s ago; the recent batches took 30 s: 4 x 30 = 120 s is the bar.
    assert slow_batch((7, 900.0), [20.0, 30.0, 40.0], now=1_000.0) is None


def test_a_batch_far_longer_than_the_recent_ones_is_reported_while_it_runs() -> None:
    line = slow_batch((7, 879.0), [20.0, 30.0, 40.0], now=1_000.0)
    assert line == "[score] batch 7 still running after 121 s (median batch 30 s)"


def test_short_batches_still_get_a_minute_before_a_batch_counts_as_slow() -> None:
    # Median 2 s would put the bar at 8 s: a one-minute floor keeps bursts quiet.
    assert slow_batch((3, 950.0), [2.0, 2.0], now=1_000.0) is None
    assert slow_batch((3, 939.0), [2.0, 2.0], now=1_000.0) is not None
    # The first batch has nothing to compare with: the floor alone.
    assert slow_batch((0, 939.0), [], now=1_000.0) is not None
    assert slow_batch((0, 941.0), [], now=1_000.0) is None


def test_usual_batch_length_is_taken_from_the_last_batches_that_had_rows(
    make_cfg: Callable[..., Config],
) -> None:
    scorer = BatchScorer(make_cfg(), TRANSACTIONS)
    scorer.by_batch = {i: {"rows": 10, "seconds": float(i)} for i in range(30)}
    scorer.by_batch[29] = {"rows": 0, "seconds": 0.1}  # an empty batch says nothing
    assert scorer.recent_seconds() == [float(i) for i in range(9, 29)]
    assert scorer.recent_seconds(3) == [26.0, 27.0, 28.0]
    assert scorer.running is None
