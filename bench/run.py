"""Run LakeHound's benchmark suite; write bench/results.json and bench/RESULTS.md.

    python -m bench.run [--smoke] [--only batch scoring quality] [--sizes 1000000,10000000]
                        [--reps N] [--out bench]

Each benchmark runs in its own process (fresh JVM) while this process samples the
resident memory of that process tree (:mod:`bench.memory`). Every figure is measured
side by side with its baseline in the same run and reported as a ratio of medians
of paired repetitions, because the machine is shared and noisy.

``--smoke`` is what CI runs (seconds, no JVM): the scoring benchmark's in-process
contenders (scikit-learn, the bundle, pandas end to end) on 5,000 rows and the
quality benchmark on thyroid only, rendered like the full run. The Spark
benchmarks need a JVM and a minute or more even on tiny data, so the smoke runs
batch only if asked (``--smoke --only batch``, 2,000 rows).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import machine
from bench.common import RESULT_PREFIX, median
from bench.memory import TreeSampler
from bench.streaming import DRAIN_SECONDS, MIN_VERDICT_BATCHES
from bench.streaming import WORKLOAD as STREAM_WORKLOAD

# ADBench's published ROC-AUC / PR-AUC x100 (../shared/data/README.md), next to the peers.
PUBLISHED = {
    ("cardio", "iforest"): "93.2 / 60.0",
    ("thyroid", "iforest"): "98.3 / 63.1",
    ("shuttle", "iforest"): "99.6 / 97.6",
    ("cardio", "ecod"): "94.4 / 68.6",
    ("thyroid", "ecod"): "97.8 / 54.1",
    ("shuttle", "ecod"): "99.4 / 95.8",
    ("cardio", "pca"): "95.6 / 66.1",
    ("thyroid", "pca"): "96.3 / 44.3",
    ("shuttle", "pca"): "98.6 / 92.4",
    ("cardio", "lof"): "66.3 / 23.8",
    ("thyroid", "lof"): "86.9 / 20.8",
    ("shuttle", "lof"): "57.1 / 13.8",
}
BENCHMARKS = ["batch", "scoring", "quality", "streaming"]
SMOKE_DEFAULT = ["scoring", "quality", "streaming"]
BATCH_TARGET_10X = 11.0  # 10x the rows in at most 11x the time (linear)
STREAMING_NOTE = (
    "left out: no streaming latency function (lakehound/streaming, jobs/stream.py) "
    "existed when the suite was run"
)


def run_worker(module: str, params: dict[str, Any], timeout: float = 7200) -> dict[str, Any]:
    """Run ``python -m bench.<module>`` with memory sampling; its result plus peaks.

    The worker's output (Spark's log, tracebacks, the streaming job's progress lines,
    the result line) is kept in ``<workdir>.log`` when the worker has a workdir, also
    after a successful run: a slow or odd run is explained from there."""
    env = dict(os.environ)
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    if params.get("workdir"):
        # Next to the workdir, not in it: workers may clear their workdir when done.
        work = Path(params["workdir"])
        work.parent.mkdir(parents=True, exist_ok=True)
        log_path = work.parent / f"{work.name}.log"
    else:
        fd, name = tempfile.mkstemp(prefix=f"bench-{module}-", suffix=".log")
        os.close(fd)  # reopened by path below
        log_path = Path(name)
    start = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"bench.{module}", "--params", json.dumps(params)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        sampler = TreeSampler(proc.pid).start()
        try:
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
            memory = sampler.stop()
    out = log_path.read_text(errors="replace").splitlines()
    lines = [ln for ln in out if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(out[-15:])
        raise RuntimeError(
            f"bench.{module} failed (exit {proc.returncode}; its log: {log_path}):\n{tail}"
        )
    if not params.get("workdir"):
        log_path.unlink()
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    result["memory"] = memory
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    return result


def batch_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The batch runs (smallest first) and, with two sizes or more, the scaling from
    the smallest to the largest."""
    runs = sorted(runs, key=lambda r: r["rows"])
    batch: dict[str, Any] = {"runs": runs}
    if len(runs) >= 2:
        a, b = runs[0], runs[-1]
        batch["scaling"] = {
            "from_rows": a["rows"],
            "to_rows": b["rows"],
            "rows_ratio": round(b["rows"] / a["rows"], 2),
            "end_to_end_time_ratio": round(
                b["seconds"]["end_to_end"] / a["seconds"]["end_to_end"], 2
            ),
            "stage_time_ratio": {
                k: round(b["seconds"][k] / a["seconds"][k], 2)
                for k in a["seconds"]
                if a["seconds"][k] > 0
            },
            "driver_jvm_rss_ratio": round(
                b["memory"]["peak_rss_jvm_mib"] / max(a["memory"]["peak_rss_jvm_mib"], 1), 2
            ),
        }
        if "pandas" in a and "pandas" in b:
            batch["scaling"]["pandas_end_to_end_time_ratio"] = round(
                b["pandas"]["seconds"]["end_to_end"] / a["pandas"]["seconds"]["end_to_end"], 2
            )
    return batch


# Figures of one rate's streaming run that a summary of repetitions takes the median of.
_STREAM_MEDIANS = (
    "drain_seconds",
    "p50_seconds",
    "p99_seconds",
    "median_batch_seconds",
    "lag_growth_seconds",
)
_STREAM_COUNT_MEDIANS = ("produced", "scored_within_run", "batches", "median_batch_rows")


def _median(xs: list[Any]) -> float | None:
    """:func:`median` of the figures a run has (older runs lack some, NaN: none measured)."""
    m = median([float(x) for x in xs if x is not None and not math.isnan(float(x))])
    return None if math.isnan(m) else m


def streaming_summary(benches: list[dict[str, Any]]) -> dict[str, Any]:
    """Streaming results of separate invocations as repetitions of one protocol.

    Only results with the last one's protocol (seconds per rate and workload) count; a
    result of another protocol is replaced, as any other benchmark is by a later run.
    Invocations may cover different rates (1k, 2.5k, 5k in some; 500, 750, 1k in
    others). Per rate: the median of each figure over its repetitions, and "sustained"
    only if every repetition sustained it. The raw runs stay under ``repetitions`` (one
    list per invocation), so a summary merged again with a new run adds a repetition.
    """

    def reps(b: dict[str, Any]) -> list[list[dict[str, Any]]]:
        return list(b.get("repetitions") or [b.get("runs", [])])

    def protocol(b: dict[str, Any]) -> tuple[Any, Any]:
        # Results from before the workload was recorded were all measured on the
        # current one (older workloads' results were replaced when it changed).
        return b.get("seconds_per_rate"), b.get("workload", STREAM_WORKLOAD)

    last = benches[-1]
    if "skipped" in last:
        return last
    same = [b for b in benches if "skipped" not in b and protocol(b) == protocol(last)]
    all_reps = [runs for b in same for runs in reps(b)]
    if len(all_reps) == 1:
        return last
    runs = []
    for rate in sorted({r["rate"] for rs in all_reps for r in rs}):
        mine = [r for rs in all_reps for r in rs if r["rate"] == rate]
        out: dict[str, Any] = {"rate": rate, "repetitions": len(mine)}
        out["sustained_repetitions"] = sum(bool(r["sustained"]) for r in mine)
        out["sustained"] = out["sustained_repetitions"] == len(mine)
        for k in _STREAM_MEDIANS:
            out[k] = _median([r.get(k) for r in mine])
        for k in _STREAM_COUNT_MEDIANS:
            m = _median([r.get(k) for r in mine])
            out[k] = None if m is None else round(m)
        stages = sorted({st for r in mine for st in r.get("median_stage_seconds") or {}})
        out["median_stage_seconds"] = {
            st: _median([(r.get("median_stage_seconds") or {}).get(st) for r in mine])
            for st in stages
        }
        out["max_seconds"] = max(
            (r["max_seconds"] for r in mine if r.get("max_seconds")), default=None
        )
        runs.append(out)
    sustained = [r["rate"] for r in runs if r["sustained"]]
    memory_keys = sorted({k for b in same for k in b.get("memory", {})})
    floors = [b["commit_floor"] for b in same if b.get("commit_floor")]
    floor = {k: _median([f.get(k) for f in floors]) for k in floors[0]} if floors else None
    return {
        "commit_floor": floor,
        "runs": runs,
        "seconds_per_rate": last.get("seconds_per_rate"),
        "workload": last.get("workload", STREAM_WORKLOAD),
        "highest_sustained_rate": max(sustained) if sustained else None,
        "memory": {
            k: max(b["memory"][k] for b in same if k in b.get("memory", {})) for k in memory_keys
        },
        "wall_seconds": sum(b.get("wall_seconds", 0) for b in same),
        "repetitions": all_reps,
    }


def streaming_available() -> bool:
    root = Path(__file__).resolve().parents[1]
    return (root / "lakehound" / "streaming").is_dir() or (root / "jobs" / "stream.py").exists()


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    smoke = args.smoke
    only = args.only or (SMOKE_DEFAULT if smoke else BENCHMARKS)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else None
    if sizes is None:
        sizes = [2_000] if smoke else [1_000_000, 10_000_000]
    reps = args.reps or (1 if smoke else 3)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lakehound-bench-"))
    results: dict[str, Any] = {"machine": machine.describe(), "smoke": smoke, "benchmarks": {}}
    out = results["benchmarks"]
    if "batch" in only:
        runs = []
        for n in sizes:
            print(f"bench: batch {n:,} rows x {reps}", flush=True)
            params = {
                "rows": n,
                "reps": reps,
                "workdir": str(work / f"batch_{n}"),
                # The pandas baseline holds everything in one process (~2.3 GiB per
                # 1M rows): beyond the cap it would exhaust this machine's memory.
                "pandas": n <= args.pandas_max_rows,
            }
            runs.append(run_worker("batch", params))
        batch = batch_summary(runs)
        out["batch"] = batch
    if "scoring" in only:
        n = 5_000 if smoke else args.scoring_rows
        print(f"bench: scoring {n:,} rows x {reps}", flush=True)
        out["scoring"] = run_worker(
            "scoring",
            {
                "rows": n,
                "reps": reps,
                "spark": not smoke,
                "synapseml": not smoke,
                "workdir": str(work / "scoring"),
            },
        )
    if "quality" in only:
        print("bench: quality", flush=True)
        out["quality"] = run_worker("quality", {"smoke": smoke})
    if "streaming" in only:
        if smoke or not streaming_available():
            # The latency run (own broker, lakehouse, 30 s per rate) does not fit a smoke run.
            note = "smoke run: see python -m bench.streaming" if smoke else STREAMING_NOTE
            out["streaming"] = {"skipped": note}
        else:
            print("bench: streaming", flush=True)
            rates = [int(r) for r in args.stream_rates.split(",")]
            params = {
                "rates": rates,
                "seconds": args.stream_seconds,
                "workdir": str(work / "streaming"),
            }
            out["streaming"] = run_worker("streaming", params)
    return results


def _f(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def _batch_markdown(batch: dict[str, Any]) -> list[str]:
    runs = batch["runs"]
    reps = sorted({r["reps"] for r in runs})
    # Sizes merged from separate invocations may differ in repetitions: say which.
    of = (
        f"{reps[0]} repetition(s)"
        if len(reps) == 1
        else "repetitions " + ", ".join(f"{r['rows']:,} x{r['reps']}" for r in runs)
    )
    lines = [
        f"### Batch (generated transactions, local[2], median of {of})",
        "",
        "Rows per second (seconds) per stage. In local mode the driver and the executor "
        "are one JVM: its peak RSS and used heap are both.",
        "",
        "| rows | count() | validate | featurize | train | score | write | end to end | "
        "validate / count | peak JVM RSS (driver = executor) | peak JVM heap used | "
        "peak Python workers RSS |",
        "|---" * 12 + "|",
    ]
    for r in runs:
        rps, sec = r["rows_per_second"], r["seconds"]
        cells = [
            f"{_f(rps[k])}/s ({sec[k]:.1f}s)"
            for k in ["count", "validate", "featurize", "train", "score", "write", "end_to_end"]
        ]
        mem = r["memory"]
        lines.append(
            f"| {r['rows']:,} | " + " | ".join(cells) + f" | {r['validate_over_count']:.1f}x"
            f" | {_f(mem['peak_rss_jvm_mib'])} MiB | {_f(r['peak_jvm_heap_used_mib'])} MiB"
            f" | {_f(mem['peak_rss_python_workers_mib'])} MiB |"
        )
    lines += _validate_markdown([r for r in runs if "validate_over_scan" in r])
    with_pandas = [r for r in runs if "pandas" in r]
    if with_pandas:
        lines += [
            "",
            "Same raw files, same repetitions: the single-process pandas + scikit-learn "
            "pipeline (`bench/pandas_pipeline.py`: 17 of the features, no window grid, "
            "no dataset-level expectations), Parquet out.",
            "",
            "| rows | validate | featurize | train | score | write | end to end | "
            "Spark end-to-end throughput / pandas | peak driver Python RSS (pandas) |",
            "|---" * 9 + "|",
        ]
        for r in with_pandas:
            p = r["pandas"]
            cells = [
                f"{_f(p['rows_per_second'][k])}/s ({p['seconds'][k]:.1f}s)"
                for k in ["validate", "featurize", "train", "score", "write", "end_to_end"]
            ]
            lines.append(
                f"| {r['rows']:,} | " + " | ".join(cells)
                + f" | {r['spark_vs_pandas_end_to_end']:.2f}x"
                f" | {_f(r['memory']['peak_rss_driver_python_mib'])} MiB |"
            )  # fmt: skip
    if "scaling" in batch:
        sc = batch["scaling"]
        verdict = (
            f" (target at most {BATCH_TARGET_10X:g}x: "
            + ("met" if sc["end_to_end_time_ratio"] <= BATCH_TARGET_10X else "missed")
            + ")"
            if abs(sc["rows_ratio"] - 10) < 1.5
            else ""
        )
        lines += [
            "",
            f"Scaling {runs[0]['rows']:,} -> {runs[-1]['rows']:,} rows ({sc['rows_ratio']}x): "
            f"end-to-end time {sc['end_to_end_time_ratio']}x{verdict}; per stage "
            + ", ".join(f"{k} {x}x" for k, x in sc["stage_time_ratio"].items())
            + f"; peak JVM RSS {sc['driver_jvm_rss_ratio']}x"
            + (
                f"; pandas end to end {sc['pandas_end_to_end_time_ratio']}x"
                if "pandas_end_to_end_time_ratio" in sc
                else ""
            )
            + ".",
        ]
    if batch.get("note"):
        lines += ["", str(batch["note"])]
    lines.append("")
    return lines


# The validate job's RunContext stages, in the order it runs them.
VALIDATE_STAGES = [
    ("read raw input", "read"),
    ("classify rows", "classify + cache"),
    ("expectations (GX)", "GX suite"),
    ("write validated", "write validated"),
    ("write quarantine", "write quarantine"),
]


def _validate_markdown(runs: list[dict[str, Any]]) -> list[str]:
    """Where validation's time goes, next to its two baselines (runs that measured them)."""
    if not runs:
        return []
    lines = [
        "",
        "Validation against its baselines: `count()` (the target's, which parses "
        "nothing) and a full scan (every field of every row read as validation reads "
        "it, hashed: the least any row-level check does). Median seconds.",
        "",
        "| rows | count() | full scan | "
        + " | ".join(label for _, label in VALIDATE_STAGES)
        + " | validate | validate / count | validate / full scan |",
        "|---" * (6 + len(VALIDATE_STAGES)) + "|",
    ]
    for r in runs:
        parts = r["validate_seconds"]
        stages = [
            f"{parts[f'validate:{k}']:.1f}s" if f"validate:{k}" in parts else "-"
            for k, _ in VALIDATE_STAGES
        ]
        lines.append(
            f"| {r['rows']:,} | {r['seconds']['count']:.1f}s | {parts['scan']:.1f}s | "
            + " | ".join(stages)
            + f" | {r['seconds']['validate']:.1f}s | {r['validate_over_count']:.1f}x"
            f" | {r['validate_over_scan']:.1f}x |"
        )
    return lines


def _scoring_markdown(s: dict[str, Any]) -> list[str]:
    rps = s["rows_per_second"]
    lines = [
        f"### Scoring, one core ({s['rows']:,} rows x {s['features']} features, Isolation "
        f"Forest 100 trees / 256 samples, median of {s['reps']})",
        "",
        "| contender | rows/s | ratio |",
        "|---|---|---|",
        f"| scikit-learn `score_samples`, one process (baseline) | {_f(rps['sklearn'])} | 1.00 |",
    ]
    if "spark_udf" in rps:
        lines += [
            f"| LakeHound pandas-UDF path (`score_column`, local[1]) | {_f(rps['spark_udf'])} | "
            f"{s['udf_vs_sklearn']:.2f}x of sklearn (target >= 0.8) |",
            f"| pandas UDF calling only `score_samples` (local[1]) | {_f(rps['spark_udf_bare'])} "
            f"| {s['bare_udf_vs_sklearn']:.2f}x of sklearn |",
        ]
    if "bundle" in rps:
        batch = s.get("arrow_batch_size", 10_000)
        lines.append(
            f"| `ModelBundle.score_arrays` in one process, {batch:,}-row batches, no Spark "
            f"| {_f(rps['bundle'])} | {s['bundle_vs_sklearn']:.2f}x of sklearn |"
        )
    if "synapseml" in rps:
        lines.append(
            f"| SynapseML JVM Isolation Forest (local[1]) | {_f(rps['synapseml'])} | "
            f"{s['synapseml_vs_udf']:.2f}x of the pandas-UDF path |"
        )
    lines.append(
        f"| pandas + scikit-learn, one process: read Parquet -> score -> write Parquet | "
        f"{_f(rps['pandas_e2e'])} | baseline |"
    )
    if "spark_e2e" in rps:
        lines.append(
            f"| Spark local[1]: read Parquet -> `score_column` -> write Parquet | "
            f"{_f(rps['spark_e2e'])} | {s['spark_e2e_vs_pandas_e2e']:.2f}x of pandas |"
        )
    if s.get("note"):
        lines += ["", str(s["note"])]
    lines.append("")
    return lines


def _bgl_markdown(bgl: dict[str, Any] | str) -> list[str]:
    title = "### BGL system log (loghub BGL_2k)"
    if isinstance(bgl, str):
        return [f"{title}: {bgl}", ""]
    lines = [title, ""]
    t = bgl["templates"]
    if isinstance(t, str):
        lines += [f"Templates: {t}", ""]
    else:
        lines += [
            f"Template mining on {t['lines']:,} lines against loghub's reference parse "
            "(Drain's BGL setting: 2 prefix tokens, similarity 0.5):",
            "",
            "| measure | LakeHound | Drain (loghub benchmark, published) |",
            "|---|---|---|",
            f"| grouping accuracy | {t['grouping_accuracy']:.3f} "
            f"| {t['drain_published_grouping_accuracy']:.3f} |",
            f"| parsing accuracy | {t['parsing_accuracy']:.3f} | - |",
            "",
        ]
    a = bgl["alerts"]
    if isinstance(a, str):
        lines += [f"Alerts: {a}", ""]
    else:
        lines += [
            "Alerts of the batch pipeline (`jobs.pipeline`, `conf/bgl.yaml`: "
            + " + ".join(a["detectors"])
            + f", alert at ensemble severity >= {a['alert_severity']:g}) per (component, "
            "5-minute window) feature row. A row is anomalous when any of its lines carries "
            f"an alert label ({a['alert_lines']:,} of {a['lines']:,} lines); the ground "
            "truth is built from the raw lines, not by the detector code.",
            "",
            "| windows (with lines) | anomalous windows | alerts | true alerts | precision "
            "| recall |",
            "|---|---|---|---|---|---|",
            f"| {a['windows']:,} ({a['active_windows']:,}) | {a['anomalous_windows']:,} "
            f"| {a['alerts']:,} "
            f"| {a['true_alerts']:,} | {a['precision']:.3f} | {a['recall']:.3f} |",
            "",
        ]
        if a.get("anomalous_windows_without_row"):
            lines += [
                f"{a['anomalous_windows_without_row']:,} anomalous (component, window) pairs "
                "have no feature row (not counted in the recall).",
                "",
            ]
    return lines


def _cardtx_markdown(c: dict[str, Any] | str) -> list[str]:
    title = "### Card transactions (Fraud Detection Handbook simulator)"
    if isinstance(c, str):
        return [f"{title}: {c}", ""]
    k = "card_precision_at_100"
    lines = [
        title,
        "",
        f"Handbook protocol ({c['protocol']}): {c['train_rows']:,} training and "
        f"{c['test_rows']:,} test transactions ({c['test_frauds']:,} frauds). PyOD fitted "
        "on the same training week's features, default parameters (seed 0).",
        "",
        "| model | ROC-AUC | average precision | card precision@100 |",
        "|---|---|---|---|",
    ]
    for name, r in c["results"].items():
        lines.append(f"| {name} | {r['roc_auc']:.3f} | {r['average_precision']:.3f} | {r[k]:.3f} |")
    for name, (roc, ap, cp) in c["published"].items():
        lines.append(f"| published {name} | {roc:.3f} | {ap:.3f} | {cp:.3f} |")
    if c.get("note"):
        lines += ["", str(c["note"])]
    lines.append("")
    return lines


def to_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    v = m["versions"]
    lines = [
        f"Measured {m['date_utc']} on {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, "
        f"{m['os']}, load average {m['load_avg_1m_at_start']} at start (machine shared with "
        f"other jobs); Python {m['python']}, {m['java']}, pyspark {v['pyspark']}, "
        f"delta-spark {v['delta-spark']}, synapseml {v['synapseml']}, scikit-learn "
        f"{v['scikit-learn']}, numpy {v['numpy']}, pandas {v['pandas']}, pyarrow {v['pyarrow']}, "
        f"pyod {v['pyod']}."
        + (" SMOKE RUN (tiny sizes, not representative)." if results["smoke"] else ""),
        "",
    ]
    if results.get("merged_from"):
        lines += [
            "Benchmarks measured in separate invocations started at "
            + ", ".join(results["merged_from"])
            + " (machine described as at the first).",
            "",
        ]
    b = results["benchmarks"]
    if "batch" in b:
        lines += _batch_markdown(b["batch"])
    if "scoring" in b:
        lines += _scoring_markdown(b["scoring"])
    if "quality" in b:
        q = b["quality"]
        if "markdown" in q:
            lines += [q["markdown"].replace("## Detection quality", "### Detection quality"), ""]
        else:
            lines += ["### Detection quality (ADBench ROC-AUC / PR-AUC x100)", ""]
            lines += ["| data | detector | ROC-AUC | PR-AUC |", "|---|---|---|---|"]
            for r in q["adbench"]["results"]:
                lines.append(
                    f"| {r['dataset']} | {r['detector']} | {r['roc_auc']:.1f} | {r['pr_auc']:.1f} |"
                )
            lines.append("")
        if isinstance(q.get("pyod"), list):
            lines += ["PyOD peers on the same splits (ROC-AUC / PR-AUC x100):", ""]
            lines += [
                "| data | detector | ROC-AUC | PR-AUC | ADBench published ROC / PR |",
                "|---|---|---|---|---|",
            ]
            for r in q["pyod"]:
                pub = PUBLISHED.get((r["dataset"], r["detector"].removeprefix("pyod_")), "-")
                lines.append(
                    f"| {r['dataset']} | {r['detector']} | {r['roc_auc']:.1f} | {r['pr_auc']:.1f} "
                    f"| {pub} |"
                )
            lines.append("")
        else:
            lines += [str(q.get("pyod")), ""]
        if "bgl" in q:
            lines += _bgl_markdown(q["bgl"])
        if "cardtx" in q:
            lines += _cardtx_markdown(q["cardtx"])
    if "streaming" in b:
        lines += _streaming_markdown(b["streaming"])
    return "\n".join(lines)


def _latency(x: float | None, digits: int = 2) -> str:
    # NaN when no event (or no micro-batch) of the rate was committed within the run.
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}f} s"


def _streaming_markdown(s: dict[str, Any]) -> list[str]:
    if "skipped" in s:
        return [f"### Streaming latency: {s['skipped']}", ""]
    # Repetitions per rate: invocations may have covered different rates.
    counts = sorted({r["repetitions"] for r in s.get("runs", []) if "repetitions" in r})
    reps = ""
    if len(counts) == 1 and counts[0] > 1:
        reps = f", median of {counts[0]} repetitions"
    elif len(counts) > 1:
        reps = f", medians of {counts[0]} to {counts[-1]} repetitions per rate"
    lines = [
        f"### Streaming latency (produce to Kafka -> scores and alerts committed in Delta, "
        f"{s.get('seconds_per_rate', 0):.0f} s per rate, local[2]{reps})",
        "",
        "| events/s | produced | committed | drain | p50 | p99 | micro-batches "
        "| median batch (rows) | of which classify / features + scores / writes "
        "| lag growth | sustained |",
        "|---" * 11 + "|",
    ]
    for r in s.get("runs", []):
        growth = r.get("lag_growth_seconds")
        st = r.get("median_stage_seconds") or {}
        stages = " / ".join(
            _latency(st.get(k), 1) for k in ("classify", "features_and_scores", "writes")
        )
        rows = f" ({r['median_batch_rows']:,})" if r.get("median_batch_rows") is not None else ""
        of = f" ({r['sustained_repetitions']}/{r['repetitions']})" if "repetitions" in r else ""
        lines.append(
            f"| {r['rate']:,} | {r['produced']:,} | {r['scored_within_run']:,}"
            f" | {_latency(r.get('drain_seconds'), 1)} | {_latency(r['p50_seconds'])}"
            f" | {_latency(r['p99_seconds'])} | {r['batches']}"
            f" | {_latency(r['median_batch_seconds'], 1)}{rows} | {stages if st else '-'}"
            f" | {_latency(growth)} | {'yes' if r['sustained'] else 'no'}{of} |"
        )
    top = s.get("highest_sustained_rate")
    lines += [
        "",
        f"Highest sustained rate: {f'{top:,} events/s' if top else 'none of those tried'}.",
    ]
    floor = s.get("commit_floor")
    if floor:
        lines += [
            "",
            "The least one micro-batch's Delta commit costs here, measured by the same "
            "benchmark before the rates (a table of 10,000 rows, median of 12 rounds): an "
            f"insert-only MERGE of one row through the scoring sink "
            f"{_latency(floor['merge_one_row_seconds'])}, an append of one row "
            f"{_latency(floor['append_one_row_seconds'])}.",
        ]
    lines += [
        "",
        "Committed: events whose scores were in Delta when the run ended; the stream runs "
        f"until every event is committed or for {DRAIN_SECONDS:.0f} s after the producer "
        "stops. Drain: "
        "seconds from the producer's last send to the last commit. Lag growth: median "
        "latency of the last quarter of the events sent minus that of the first quarter. "
        "Sustained: at least 99% of the events committed, in at least "
        f"{MIN_VERDICT_BATCHES} micro-batches, and the lag grew by less than "
        "half a micro-batch (with repetitions: in every one of them, shown as sustained / "
        "repetitions; the other figures are medians over the repetitions). Stages: "
        "medians over the micro-batches of the rate (`stream_progress.details`).",
        "",
    ]
    return lines


def merge(paths: list[str]) -> dict[str, Any]:
    parts = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    merged: dict[str, Any] = {
        "machine": parts[0]["machine"],
        "smoke": any(x["smoke"] for x in parts),
        "benchmarks": {},
        # An input that is itself a merge contributes the invocations it came from.
        "merged_from": [d for x in parts for d in x.get("merged_from", [x["machine"]["date_utc"]])],
    }
    runs: dict[int, dict[str, Any]] = {}
    streaming: list[dict[str, Any]] = []
    for part in parts:
        for name, bench in part["benchmarks"].items():
            if name == "batch":
                # Sizes measured in separate invocations add up (a later run of a size wins).
                runs.update({r["rows"]: r for r in bench["runs"]})
            elif name == "streaming":
                # Invocations with the same rates and seconds are repetitions.
                streaming.append(bench)
            else:
                merged["benchmarks"][name] = bench
    if runs:
        merged["benchmarks"]["batch"] = batch_summary(list(runs.values()))
    if streaming:
        merged["benchmarks"]["streaming"] = streaming_summary(streaming)
    return merged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: what CI runs")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    p.add_argument("--sizes", help="batch sizes in rows, comma separated (default 1M,10M)")
    p.add_argument("--reps", type=int, help="repetitions per figure (default 3, smoke 1)")
    p.add_argument("--scoring-rows", type=int, default=1_000_000)
    p.add_argument(
        "--pandas-max-rows",
        type=int,
        default=2_000_000,
        help="largest batch size that also runs the single-process pandas baseline",
    )
    p.add_argument(
        "--stream-rates",
        default="1000,5000",
        help="streaming: events/s to try, comma separated (each in its own run)",
    )
    p.add_argument(
        "--stream-seconds",
        type=float,
        default=30.0,
        help="streaming: seconds of producing per rate (longer runs show whether lag grows)",
    )
    p.add_argument("--out", default="bench", help="directory for results.json and RESULTS.md")
    p.add_argument("--workdir", help="scratch directory (default: a new temp dir)")
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="RESULTS_JSON",
        help="run nothing: combine the benchmarks of earlier results.json files (later wins) "
        "and re-render, e.g. when parts of the suite ran as separate invocations",
    )
    args = p.parse_args(argv)
    results = merge(args.merge) if args.merge else run_suite(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "RESULTS.md").write_text(to_markdown(results), encoding="utf-8")
    print(f"bench: wrote {out / 'results.json'} and {out / 'RESULTS.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
