"""What the running stream reports about itself while a micro-batch is in progress, and
when it gives up restarting a failed query."""

from __future__ import annotations

from collections.abc import Callable

from lakehound.config import Config
from lakehound.streaming.batch import BatchScorer
from lakehound.streaming.progress import Restarts, failure_reason, slow_batch
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


def test_a_query_may_fail_limit_times_in_a_row_then_the_job_ends() -> None:
    restarts = Restarts(limit=2)
    assert [restarts.may_restart("score") for _ in range(3)] == [True, True, False]
    # Counted per query: the other query has its own allowance.
    assert restarts.may_restart("entity_windows") is True


def test_a_completed_trigger_after_a_restart_clears_the_count() -> None:
    restarts = Restarts(limit=1)
    # A failure a week, each followed by healthy triggers: never the end of the stream.
    for _ in range(5):
        assert restarts.may_restart("score") is True
        restarts.progressed("score")
    # Without progress between them the second failure in a row is one too many.
    assert restarts.may_restart("score") is True
    assert restarts.may_restart("score") is False


def test_limit_zero_means_the_first_failure_ends_the_job() -> None:
    assert Restarts(limit=0).may_restart("score") is False


def test_failure_reason_is_the_innermost_error_not_the_proxy_wrapper() -> None:
    wrapped = "\n".join([
        "An exception was raised by the Python Proxy. Return Message: Traceback (most recent call last):",
        '  File "/x/lakehound/streaming/sinks.py", line 120, in attempt',
        "    merge.whenNotMatchedInsertAll().execute()",
        "py4j.protocol.Py4JJavaError: An error occurred while calling o6282.execute.",
        ": java.lang.OutOfMemoryError: Java heap space",
        "\tat scala.collection.immutable.List.$colon$colon(List.scala:117)",
    ])  # fmt: skip
    assert failure_reason(wrapped) == "java.lang.OutOfMemoryError: Java heap space"
    assert failure_reason("RuntimeError: injected\n") == "RuntimeError: injected"
    # Nothing that looks like an error: the first line as it is.
    assert failure_reason("query stopped\nby the user") == "query stopped"
