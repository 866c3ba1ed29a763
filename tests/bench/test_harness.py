"""The benchmark harness itself (not the benchmarks' targets: those live in bench/ only)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from bench.common import median, paired_ratio
from bench.memory import TreeSampler
from bench.pandas_pipeline import _rolling
from bench.quality_real import alert_precision_recall, bgl_window_truth
from bench.run import (
    _batch_markdown,
    _bgl_markdown,
    _cardtx_markdown,
    _streaming_markdown,
    batch_summary,
    merge,
)
from lakehound import io
from lakehound.config import Config

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
    # Merging the merge with a later invocation lists all three invocations.
    both = tmp_path / "both.json"
    both.write_text(json.dumps(merged))
    later = tmp_path / "later.json"
    later.write_text(json.dumps(_results({"scoring": {"rows": 7}}, "d3")))
    again = merge([str(both), str(later)])
    assert again["merged_from"] == ["d1", "d2", "d3"]
    assert again["benchmarks"]["scoring"] == {"rows": 7}
    assert [r["rows"] for r in again["benchmarks"]["batch"]["runs"]] == [10**6, 10**7]
    assert batch["scaling"]["driver_jvm_rss_ratio"] == 10.0


def _stream_run(rate: int, p50: float, sustained: bool, growth: float) -> dict[str, Any]:
    return {"rate": rate, "produced": 100 * rate, "scored_within_run": 100 * rate,
            "drain_seconds": p50 / 2, "p50_seconds": p50, "p99_seconds": 2 * p50,
            "max_seconds": 3 * p50, "batches": 4, "median_batch_seconds": 30.0,
            "median_batch_rows": 30 * rate, "lag_growth_seconds": growth,
            "median_stage_seconds": {"writes": p50 / 10}, "sustained": sustained}  # fmt: skip


def test_merge_takes_streaming_invocations_of_one_protocol_as_repetitions(
    tmp_path: Path,
) -> None:
    def invocation(name: str, seconds: float, runs: list[dict[str, Any]], rss: float) -> str:
        bench = {"runs": runs, "seconds_per_rate": seconds, "wall_seconds": 100.0,
                 "memory": {"peak_rss_jvm_mib": rss}}  # fmt: skip
        if name != "r1":  # the first repetition predates the commit floor
            bench["commit_floor"] = {"merge_one_row_seconds": rss / 8000,
                                     "append_one_row_seconds": 0.9}  # fmt: skip
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(_results({"streaming": bench}, name)))
        return str(path)

    # Another protocol (30 s per rate): replaced, not a repetition.
    old = invocation("old", 30.0, [_stream_run(1000, 5.0, True, 0.0)], 9000.0)
    reps = [
        invocation("r1", 120.0, [_stream_run(1000, 50.0, True, 1.0),
                                 _stream_run(5000, 120.0, False, 50.0)], 8000.0),
        invocation("r2", 120.0, [_stream_run(1000, 56.0, True, 3.0),
                                 _stream_run(5000, 100.0, True, 2.0)], 8500.0),
        invocation("r3", 120.0, [_stream_run(1000, 53.0, True, -2.0),
                                 _stream_run(5000, 130.0, False, 60.0)], 7000.0),
    ]  # fmt: skip
    s = merge([old, *reps])["benchmarks"]["streaming"]
    one, five = s["runs"]
    assert (one["rate"], one["repetitions"], one["sustained_repetitions"]) == (1000, 3, 3)
    assert one["p50_seconds"] == 53.0 and one["p99_seconds"] == 106.0
    assert one["lag_growth_seconds"] == 1.0 and one["max_seconds"] == 168.0
    assert one["median_stage_seconds"] == {"writes": 5.3}
    # Sustained at 5k in one repetition of three: not sustained.
    assert (five["sustained_repetitions"], five["sustained"]) == (1, False)
    assert five["p50_seconds"] == 120.0 and five["lag_growth_seconds"] == 50.0
    assert s["highest_sustained_rate"] == 1000
    assert s["memory"] == {"peak_rss_jvm_mib": 8500.0} and s["wall_seconds"] == 300.0
    assert len(s["repetitions"]) == 3
    # Median of the floors of r2 and r3 (r1 has none, "old" is another protocol).
    assert s["commit_floor"] == {"merge_one_row_seconds": (8500 + 7000) / 8000 / 2,
                                 "append_one_row_seconds": 0.9}  # fmt: skip
    lines = _streaming_markdown(s)
    assert any("of one row through the scoring sink 0.97 s, an append of one row 0.90 s" in x
               for x in lines)  # fmt: skip
    assert lines[0].endswith("120 s per rate, local[2], median of 3 repetitions)")
    assert lines[4].endswith("| 1.00 s | yes (3/3) |") and lines[5].endswith("| no (1/3) |")
    # The summary merged with a fourth invocation: four repetitions.
    merged = tmp_path / "merged.json"
    merged.write_text(json.dumps(merge([old, *reps])))
    fourth = invocation("r4", 120.0, [_stream_run(1000, 60.0, True, 0.0),
                                      _stream_run(5000, 90.0, True, 1.0)], 100.0)  # fmt: skip
    again = merge([str(merged), fourth])["benchmarks"]["streaming"]
    assert [r["repetitions"] for r in again["runs"]] == [4, 4]
    assert again["runs"][0]["p50_seconds"] == 54.5
    # A single invocation stays as it was measured.
    assert merge([reps[0]])["benchmarks"]["streaming"]["runs"][0]["p50_seconds"] == 50.0
    # An invocation of other rates under the same protocol adds rates (and a
    # repetition of the one it shares); one on another workload replaces them all.
    lower = invocation("r5", 120.0, [_stream_run(500, 40.0, True, 0.5),
                                     _stream_run(1000, 70.0, False, 20.0)], 100.0)  # fmt: skip
    wider = merge([str(merged), lower])["benchmarks"]["streaming"]
    assert [(r["rate"], r["repetitions"]) for r in wider["runs"]] == [
        (500, 1),
        (1000, 4),
        (5000, 3),
    ]
    assert wider["runs"][1]["p50_seconds"] == 54.5 and not wider["runs"][1]["sustained"]
    assert wider["highest_sustained_rate"] == 500
    assert "medians of 1 to 4 repetitions per rate" in _streaming_markdown(wider)[0]
    other = json.loads(Path(lower).read_text())
    other["benchmarks"]["streaming"]["workload"] = {"accounts": 200}
    Path(lower).write_text(json.dumps(other))
    alone = merge([str(merged), lower])["benchmarks"]["streaming"]
    assert [r["rate"] for r in alone["runs"]] == [500, 1000]
    assert "repetitions" not in alone["runs"][0]


def test_commit_floor_merges_and_appends_one_row_per_round(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    from deltalake import DeltaTable

    from bench.streaming import commit_floor

    cfg = make_cfg()
    floor = commit_floor(spark, cfg, repeats=2)
    assert set(floor) == {"merge_one_row_seconds", "append_one_row_seconds"}
    assert all(v > 0 for v in floor.values())
    ids = DeltaTable(io.table_path(cfg, "scores")).to_pyarrow_table(columns=["event_id"])
    ids = ids.column("event_id").to_pylist()
    # 10,000 rows, then one new row per round (two warm-up rounds + 2) from each of the
    # MERGE and the append: the MERGE inserted its row every time.
    assert len(ids) == len(set(ids)) == 10_000 + 4 + 4
    assert {f"m{k}" for k in range(4)} | {f"a{k}" for k in range(4)} <= set(ids)


def test_stall_watch_dumps_the_threads_of_a_batch_far_past_the_median(
    spark: SparkSession, make_cfg: Callable[..., Config], tmp_path: Path
) -> None:
    from bench.streaming import StallWatch
    from lakehound.streaming.batch import BatchScorer
    from schemas.transactions import TRANSACTIONS

    # The scorer's state as the watch reads it: batches of 2 s, then one running for 100 s.
    scorer = BatchScorer(make_cfg(), TRANSACTIONS)
    scorer.by_batch = {0: {"rows": 5, "seconds": 2.0}, 1: {"rows": 0, "seconds": 0.1}}
    watch = StallWatch(spark, scorer, tmp_path / "stalls", every=0.0, limit=1)
    watch.start()
    time.sleep(3)
    assert watch.dumps == []  # no batch in progress: nothing to dump
    scorer.running = (4, time.time() - 100)
    watch.join(30)
    [dump] = watch.dumps
    assert Path(dump).name.startswith("batch4-")
    text = Path(dump).read_text()
    assert text.startswith("batch 4 running for 10")
    assert "--- python thread stall-watch" in text
    # jstack of this session's JVM: the driver's own threads are in it.
    assert "Full thread dump" in text and '"dag-scheduler-event-loop"' in text


def test_batch_markdown_has_stages_memory_pandas_and_the_10x_verdict() -> None:
    batch = batch_summary([_batch_run(10**7, 1200.0, 600.0), _batch_run(10**6, 100.0, 50.0)])
    md = "\n".join(_batch_markdown(batch))
    assert md.index("| 1,000,000 |") < md.index("| 10,000,000 |")
    # 1M rows end to end in 100 s -> 10,000 rows/s; pandas 50 s -> Spark at 0.50x of it.
    assert "10,000/s (100.0s)" in md and "| 0.50x |" in md
    assert "end-to-end time 12.0x (target at most 11x: missed)" in md
    assert "peak JVM RSS (driver = executor)" in md


def test_validate_table_only_for_runs_that_measured_the_scan() -> None:
    new = _batch_run(10**6, 100.0, 50.0) | {
        "validate_over_scan": 4.25,
        "validate_seconds": {
            "scan": 2.5,
            "validate:read raw input": 0.2,
            "validate:classify rows": 6.0,
            "validate:expectations (GX)": 4.5,
            "validate:write validated": 3.5,
        },
    }
    # An older 10M run without the scan: kept in the main table, absent from this one.
    md = "\n".join(_batch_markdown(batch_summary([new, _batch_run(10**7, 1200.0, 600.0)])))
    rows = [line for line in md.splitlines() if line.startswith("| 1") and "full scan" not in line]
    validate_rows = [line for line in rows if line.endswith("| 4.2x |")]
    # count() and validate are 10 s each (end_to_end / 10); no quarantine write -> "-".
    assert validate_rows == [
        "| 1,000,000 | 10.0s | 2.5s | 0.2s | 6.0s | 4.5s | 3.5s | - | 10.0s | 1.5x | 4.2x |"
    ]
    assert "| 10,000,000 | 120.0s | " not in md.split("full scan")[1].split("Same raw files")[0]


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


def test_bgl_ground_truth_windows_are_epoch_aligned_per_component() -> None:
    lines = [
        "- 1000 2005.06.03 R02 t R02 RAS KERNEL INFO instruction cache parity error corrected",
        "KERNDTLB 1199 2005.06.03 R02 t R02 RAS KERNEL FATAL data TLB error interrupt",
        "- 1200 2005.06.03 R02 t R02 RAS KERNEL INFO generating core.2275",
        "APPREAD 1250 2005.06.03 R04 t R04 RAS APP FATAL ciod: failed to read message prefix",
        "APPREAD 1900 2005.06.03 R04 t R04 RAS APP FATAL ciod: failed to read message prefix",
        "garbage line",
    ]
    # 5-minute windows [900, 1200), [1200, 1500), ..., each named by its end.
    assert bgl_window_truth(lines) == {
        ("KERNEL", 1200): True,
        ("KERNEL", 1500): False,
        ("APP", 1500): True,
        ("APP", 2100): True,
    }
    truth = bgl_window_truth(lines)
    # KERNEL@1800 is an empty window after activity: no line, so normal.
    rows = [("k1", "KERNEL", 1200), ("k2", "KERNEL", 1500), ("k3", "KERNEL", 1800),
            ("a1", "APP", 1500)]  # fmt: skip
    got = alert_precision_recall(rows, ["k1", "k3"], truth)
    assert got == {
        "windows": 4,
        "active_windows": 3,
        "anomalous_windows": 2,
        "alerts": 2,
        "true_alerts": 1,
        "precision": 0.5,
        "recall": 0.5,
        "anomalous_windows_without_row": 1,  # APP@2100
    }
    with pytest.raises(ValueError, match="not in the features"):
        alert_precision_recall(rows, ["nope"], truth)


def test_bgl_and_cardtx_markdown_tables() -> None:
    bgl = {
        "templates": {"lines": 2000, "grouping_accuracy": 0.9714,
                      "parsing_accuracy": 0.8526, "drain_published_grouping_accuracy": 0.963},
        "alerts": {"windows": 120, "active_windows": 40, "anomalous_windows": 30, "alerts": 6, "true_alerts": 4,
                   "precision": 4 / 6, "recall": 4 / 30, "anomalous_windows_without_row": 0,
                   "lines": 2000, "alert_lines": 143, "alert_severity": 99.0,
                   "detectors": ["isolation_forest", "robust_zscore"]},
    }  # fmt: skip
    md = "\n".join(_bgl_markdown(bgl))
    assert "| grouping accuracy | 0.971 | 0.963 |" in md
    assert "| parsing accuracy | 0.853 | - |" in md
    assert "| 120 (40) | 30 | 6 | 4 | 0.667 | 0.133 |" in md
    assert "isolation_forest + robust_zscore" in md and "143 of 2,000 lines" in md
    assert "have no feature row" not in md
    skipped = _bgl_markdown("BGL data absent: skipped")
    assert skipped[0] == "### BGL system log (loghub BGL_2k): BGL data absent: skipped"
    part = _bgl_markdown({"templates": "absent", "alerts": bgl["alerts"]})
    assert "Templates: absent" in part and "| 120 (40) | 30 |" in "\n".join(part)

    cardtx = {
        "protocol": "7/7/7 days",
        "train_rows": 60000,
        "test_rows": 58000,
        "test_frauds": 400,
        "results": {"PyOD ECOD (unsupervised)": {"roc_auc": 0.8, "average_precision": 0.25,
                                                 "card_precision_at_100": 0.2143}},
        "published": {"random forest (supervised)": [0.867, 0.658, 0.287]},
        "note": "pyod not installed: peer rows skipped",
    }  # fmt: skip
    md = "\n".join(_cardtx_markdown(cardtx))
    assert "60,000 training and 58,000 test transactions (400 frauds)" in md
    assert "| PyOD ECOD (unsupervised) | 0.800 | 0.250 | 0.214 |" in md
    assert "| published random forest (supervised) | 0.867 | 0.658 | 0.287 |" in md
    assert md.index("PyOD ECOD") < md.index("published random forest")
    assert "pyod not installed" in md
    assert _cardtx_markdown("absent")[0].endswith("simulator): absent")


# The smoke took 38 s wall (6 s of CPU) on this shared 2-core machine at load
# average 18: over the 20 s budget for an unmarked test, hence slow.
@pytest.mark.slow
def test_smoke_run_writes_results_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "out"
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out),
         "--workdir", str(tmp_path / "work")],
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
    # A worker's output is kept next to its workdir (scoring has one), result line included.
    assert (tmp_path / "work" / "scoring.log").read_text().count("BENCH_RESULT ") == 1
    print(f"bench smoke: {elapsed:.0f} s")


def test_streaming_markdown_shows_missing_latency_as_a_dash() -> None:
    nan = float("nan")
    runs = [
        {"rate": 1000, "produced": 30011, "scored_within_run": 2066, "p50_seconds": 41.14,
         "p99_seconds": 42.36, "batches": 1, "median_batch_seconds": 55.169, "sustained": False},
        {"rate": 5000, "produced": 150041, "scored_within_run": 0, "p50_seconds": nan,
         "p99_seconds": nan, "batches": 1, "median_batch_seconds": 32.977, "sustained": False},
    ]  # fmt: skip
    lines = _streaming_markdown(
        {"runs": runs, "seconds_per_rate": 30.0, "highest_sustained_rate": None}
    )
    # Results from before the drain, stage and lag-growth columns show them as dashes.
    assert "| 1,000 | 30,011 | 2,066 | - | 41.14 s | 42.36 s | 1 | 55.2 s | - | - | no |" in lines
    assert "| 5,000 | 150,041 | 0 | - | - | - | 1 | 33.0 s | - | - | no |" in lines
    staged = {**runs[0], "median_batch_rows": 12000, "lag_growth_seconds": 1.5, "drain_seconds": 7.25,
              "median_stage_seconds": {"classify": 0.9, "features_and_scores": 16.2,
                                       "writes": 6.54, "delivery": 0.01}}  # fmt: skip
    row = _streaming_markdown({"runs": [staged], "highest_sustained_rate": None})[4]
    assert row == (
        "| 1,000 | 30,011 | 2,066 | 7.2 s | 41.14 s | 42.36 s | 1 | 55.2 s (12,000)"
        " | 0.9 s / 16.2 s / 6.5 s | 1.50 s | no |"
    )
    assert "Highest sustained rate: none of those tried." in lines
    ok = _streaming_markdown({"runs": [], "highest_sustained_rate": 1000})
    assert "Highest sustained rate: 1,000 events/s." in ok
    assert _streaming_markdown({"skipped": "smoke"})[0] == "### Streaming latency: smoke"


def test_lag_growth_and_sustained_verdict() -> None:
    from bench.streaming import lag_growth, sustained

    # Keeping up: the same latency all along, whatever the send time.
    steady = [(t, 2.5) for t in range(100)]
    # Falling behind: latency grows by 0.5 s per second sent (0 -> 49.5 s).
    behind = [(t, 0.5 * t) for t in range(100)]
    assert lag_growth(steady) == 0.0
    # Medians of the first and last 25 latencies: 0.5 * 12 and 0.5 * 87.
    assert lag_growth(behind) == 0.5 * 87 - 0.5 * 12
    assert sustained(100, 100, lag_growth(steady), median_batch=2.0, batches=8)
    assert not sustained(100, 100, lag_growth(behind), median_batch=2.0, batches=8)
    assert not sustained(98, 100, 0.0, median_batch=2.0, batches=8)  # lost more than 1%
    # Growth under half a batch passes, a whole batch (54 s batches, lag +53.7 s) fails.
    assert sustained(100, 100, 6.1, median_batch=43.5, batches=6)
    assert not sustained(100, 100, 53.7, median_batch=54.3, batches=6)
    assert not sustained(0, 0, 0.0, median_batch=2.0, batches=8)
    # Too few batches to tell: no verdict of "kept up", however flat the lag looks.
    assert sustained(100, 100, 0.0, median_batch=40.0, batches=5)
    assert not sustained(100, 100, 0.0, median_batch=40.0, batches=4)
    assert math.isnan(lag_growth(steady[:5]))
