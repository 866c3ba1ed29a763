"""RunContext stage timing: a stage nested in one of the same name is counted once."""

from __future__ import annotations

import time

from lakehound.cli import RunContext


def test_nested_stage_of_the_same_name_is_timed_once() -> None:
    ctx = RunContext("pipeline", None)
    started = time.perf_counter()
    with ctx.stage("score"):
        # What jobs.score does inside jobs.pipeline's own "score" stage.
        with ctx.stage("score"):
            time.sleep(0.05)
        with ctx.stage("write"):
            time.sleep(0.05)
    outer = time.perf_counter() - started
    # Counted twice, "score" would exceed the wall time of the outer block.
    assert 0.1 <= ctx.timings["score"] <= outer
    assert 0.05 <= ctx.timings["write"] < ctx.timings["score"]
    # A later, separate stage of the same name adds to the total.
    with ctx.stage("score"):
        time.sleep(0.05)
    assert ctx.timings["score"] >= 0.15
