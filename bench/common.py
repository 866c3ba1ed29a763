"""Shared pieces of the benchmark workers: timing, medians, ratios, the result line.

Every benchmark runs in its own Python process (a fresh JVM, and a process tree whose
memory the parent samples, see :mod:`bench.memory`), and hands its result back as one
JSON line on stdout prefixed with :data:`RESULT_PREFIX`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

RESULT_PREFIX = "BENCH_RESULT "


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def paired_ratio(numer: list[float], denom: list[float]) -> float:
    """Median of per-repetition ratios: each pair was measured back to back, so the
    machine's load (shared by other agents) mostly cancels within a pair."""
    pairs = [a / b for a, b in zip(numer, denom, strict=True) if b > 0]
    return median(pairs)


def worker_args(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", required=True, help="JSON object of benchmark parameters")
    params: dict[str, Any] = json.loads(parser.parse_args(argv).params)
    return params


def emit(result: dict[str, Any]) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    sys.stdout.flush()


def spark_overrides(master: str, partitions: int) -> list[str]:
    return [
        f"spark.master={master}",
        f"spark.shuffle_partitions={partitions}",
        "spark.log_level=ERROR",
    ]
