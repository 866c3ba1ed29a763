"""The benchmark harness itself (not the benchmarks' targets: those live in bench/ only)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench.common import median, paired_ratio
from bench.memory import TreeSampler
from bench.pandas_pipeline import _rolling
from bench.run import _batch_markdown, batch_summary, merge

ROOT = Path(__file__).resolve().parents[2]


def test_paired_ratio_is_the_median_of_per_pair_ratios() -> None:
    # pairs: 2/1, 4/1, 6/3 -> 2, 4, 2 -> median 2 (the ratio of medians would be 4/1).
    assert paired_ratio([2.0, 4.0, 6.0], [1.0, 1.0, 3.0]) == 2.0
    assert median([3.0, 1.0, 2.0, 10.0]) == 2.5


def test_tree_sampler_sees_a_child_allocation() -> None:
    # A child that holds 200 MiB of touched memory for a moment.
    code = "b = bytearray(200 * 2**20); import time; time.sleep(2.0)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    sampler = TreeSampler(proc.pid, interval=0.05).start()
    proc.wait()
    time.sleep(0.1)
    mem = sampler.stop()
    assert 200 <= mem["peak_rss_driver_python_mib"] < 400
    assert mem["peak_rss_jvm_mib"] == 0.0
    assert mem["memory_samples"] >= 5


def _batch_run(rows: int, end_to_end: float, pandas_end_to_end: float) -> dict[str, Any]:
    stages = ["count", "validate", "featurize", "train", "score", "write", "end_to_end"]
    seconds = {k: end_to_end / 10 for k in stages} | {"end_to_end": end_to_end}
    pandas_s = {k: pandas_end_to_end / 5 for k in stages[1:]} | {"end_to_end": pandas_end_to_end}
    return {
        "rows": rows,
        "reps": 1,
        "seconds": seconds,
        "rows_per_second": {k: rows / v for k, v in seconds.items()},
        "validate_over_count": 1.5,
        "peak_jvm_heap_used_mib": 900.0,
        "memory": {
            "peak_rss_jvm_mib": 2000.0 * rows / 1_000_000,
            "peak_rss_python_workers_mib": 300.0,
            "peak_rss_driver_python_mib": 500.0,
        },
        "pandas": {
            "seconds": pandas_s,
            "rows_per_second": {k: rows / v for k, v in pandas_s.items()},
        },
        "spark_vs_pandas_end_to_end": pandas_end_to_end / end_to_end,
    }


def _results(benchmarks: dict[str, Any], date: str) -> dict[str, Any]:
    return {"machine": {"date_utc": date}, "smoke": False, "benchmarks": benchmarks}


def test_merge_adds_up_batch_sizes_from_separate_invocations(tmp_path: Path) -> None:
    # 1M rows in one invocation, 10M in a later one: the 10M / 1M scaling is over both.
    one = tmp_path / "one.json"
    one.write_text(json.dumps(_results({"batch": {"runs": [_batch_run(10**6, 100.0, 50.0)]},
                                        "scoring": {"rows": 5}}, "d1")))  # fmt: skip
    ten = tmp_path / "ten.json"
    ten.write_text(json.dumps(_results({"batch": {"runs": [_batch_run(10**7, 1050.0, 700.0)]}},
                                       "d2")))  # fmt: skip
    merged = merge([str(one), str(ten)])
    assert merged["merged_from"] == ["d1", "d2"]
    assert merged["benchmarks"]["scoring"] == {"rows": 5}
    batch = merged["benchmarks"]["batch"]
    assert [r["rows"] for r in batch["runs"]] == [10**6, 10**7]
    assert batch["scaling"]["rows_ratio"] == 10.0
    assert batch["scaling"]["end_to_end_time_ratio"] == 10.5
    assert batch["scaling"]["pandas_end_to_end_time_ratio"] == 14.0
    assert batch["scaling"]["driver_jvm_rss_ratio"] == 10.0


def test_batch_markdown_has_stages_memory_pandas_and_the_10x_verdict() -> None:
    batch = batch_summary([_batch_run(10**7, 1200.0, 600.0), _batch_run(10**6, 100.0, 50.0)])
    md = "\n".join(_batch_markdown(batch))
    assert md.index("| 1,000,000 |") < md.index("| 10,000,000 |")
    # 1M rows end to end in 100 s -> 10,000 rows/s; pandas 50 s -> Spark at 0.50x of it.
    assert "10,000/s (100.0s)" in md and "| 0.50x |" in md
    assert "end-to-end time 12.0x (target at most 11x: missed)" in md
    assert "peak JVM RSS (driver = executor)" in md


def test_pandas_rolling_windows_are_point_in_time_per_key() -> None:
    ts = pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:10", "2024-01-01 00:30",
                         "2024-01-01 02:00", "2024-01-01 01:20"])  # fmt: skip
    df = pd.DataFrame(
        {"account_id": list("ababa"), "event_ts": ts, "amount": [1.0, 2.0, 3.0, 4.0, 5.0]}
    )
    # a: 00:00, 00:30, 01:20; b: 00:10, 02:00. One hour ending at the row, row included.
    assert list(_rolling(df, "account_id", "amount", "1h", "sum", "both")) == [1, 2, 4, 4, 8]
    # History only (the row excluded): the previous hour of a at 01:20 holds 00:30 alone.
    hist = _rolling(df, "account_id", "amount", "1h", "sum", "left")
    assert np.isnan(hist[[0, 1, 3]]).all() and list(hist[[2, 4]]) == [1.0, 3.0]


# The smoke took 38 s wall (6 s of CPU) on this shared 2-core machine at load
# average 18: over the 20 s budget for an unmarked test, hence slow.
@pytest.mark.slow
def test_smoke_run_writes_results_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "out"
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT, check=True, timeout=300,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    res = json.loads((out / "results.json").read_text())
    assert res["smoke"] is True
    assert res["machine"]["cores"] >= 1 and res["machine"]["memory_gib"] > 0
    # No JVM in the smoke: the scoring benchmark's in-process contenders only.
    scoring = res["benchmarks"]["scoring"]
    assert scoring["spark"] is False and scoring["rows"] == 5000
    assert set(scoring["rows_per_second"]) == {"sklearn", "bundle", "pandas_e2e"}
    assert scoring["bundle_vs_sklearn"] > 0
    assert "batch" not in res["benchmarks"]
    quality = res["benchmarks"]["quality"]
    [iforest] = [r for r in quality["adbench"]["results"] if r["detector"] == "isolation_forest"]
    assert iforest["dataset"] == "thyroid" and iforest["rows"] == 3772
    # ADBench's published Isolation Forest ROC-AUC on thyroid is 98.3 (x100).
    assert abs(iforest["roc_auc"] - 98.3) < 3.0
    assert quality["memory"]["peak_rss_driver_python_mib"] > 0
    if isinstance(quality["pyod"], list):
        pyod_if = next(r for r in quality["pyod"] if r["detector"] == "pyod_iforest")
        assert abs(pyod_if["roc_auc"] - 98.3) < 3.0
    md = (out / "RESULTS.md").read_text()
    assert "thyroid" in md and "Streaming latency" in md and "score_arrays" in md
    assert elapsed < 120, f"the smoke took {elapsed:.0f} s"
