"""Batch benchmark: rows/s per stage and end to end on generated transactions.

One worker process per size: generate the raw feed once (not timed), then for each
repetition run, in a fresh lakehouse and in one SparkSession, back to back:

* ``count``: a plain ``count()`` of the same raw CSV files (the baseline of the
  "validation costs at most 2x a count" target; Spark prunes every column, so it
  hardly parses the rows);
* ``scan``: every field of every row parsed the way validation reads it, hashed and
  summed: what any row-level check must at least do;
* ``validate``, ``featurize``, ``train`` (the jobs' own ``run`` functions);
* ``score``: the detectors' pandas UDFs and the ensemble, materialised (persisted);
* ``write``: the ``scores`` and ``alerts`` Delta writes of those scored rows;
* ``pandas_*``: then, in the same repetition, the single-process pandas +
  scikit-learn pipeline (:mod:`bench.pandas_pipeline`) on the same raw files, the
  baseline of "what a user would write without Spark".

In local mode the driver and the executor are one JVM: its peak resident memory
(sampled by the parent) and its peak used heap (MemoryMXBean) are both the driver's
and the executor's. Python worker memory is that of the pandas-UDF workers; the
driver Python process's peak is dominated by the pandas baseline, which runs in it.

The driver JVM's heap use is polled through py4j while it runs; the parent process
samples resident memory of the whole tree (:mod:`bench.memory`).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from bench import pandas_pipeline
from bench.common import emit, median, paired_ratio, spark_overrides, timed, worker_args
from jobs import featurize, generate, score, train, validate
from lakehound import io
from lakehound.cli import RunContext
from lakehound.config import Config, load_config
from lakehound.dates import run_dates
from lakehound.session import build_session
from lakehound.validation.reader import read_raw
from lakehound.validation.runner import resolve_contract

STAGES = ["validate", "featurize", "train", "score", "write"]
DAYS = 7


def generate_config(rows: int, work: Path, master: str, partitions: int) -> tuple[Config, int]:
    """Config for ~``rows`` generated transactions (accounts x 2 per day x DAYS days)."""
    accounts = max(10, round(rows / (2.0 * DAYS)))
    cfg = load_config(
        "conf/transactions.yaml",
        [
            f"lakehouse={work / 'lh_gen'}",
            f"input.path={work / 'raw'}",
            f"generate.accounts={accounts}",
            f"generate.days={DAYS}",
            "generate.tx_per_account_day=2.0",
            f"generate.files_per_day={max(1, rows // 500_000)}",
            *spark_overrides(master, partitions),
        ],
    )
    return cfg, accounts


class HeapPoller:
    """Peak used heap of the driver JVM (MemoryMXBean), polled from a thread."""

    def __init__(self, spark: SparkSession, interval: float = 0.5) -> None:
        jvm = spark.sparkContext._jvm
        assert jvm is not None
        self._bean = jvm.java.lang.management.ManagementFactory.getMemoryMXBean()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.peak = max(self.peak, int(self._bean.getHeapMemoryUsage().getUsed()))
            except Exception:  # the gateway closes at shutdown
                return

    def __enter__(self) -> HeapPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Progress:
    """Stage timings appended as JSON lines as they happen (next to the work
    directory), so a run stopped before the end still leaves what it measured."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, **fields: Any) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"utc": time.strftime("%H:%M:%S", time.gmtime()), **fields}))
            fh.write("\n")


def one_repetition(
    spark: SparkSession, cfg: Config, progress: Progress | None = None
) -> dict[str, float]:
    ctx = RunContext(job="bench", date=None)
    t: _Timings = _Timings(progress)
    # The plain baseline: the same CSV files, read and counted by Spark, nothing else.
    plain = (
        spark.read.options(**cfg.input.options)
        .option("recursiveFileLookup", "true")
        .csv(cfg.input.path)
    )
    t["count"], rows_in = timed(plain.count)

    # The floor of any row-level check: every field of every row parsed the way
    # validation reads it (strings, raw text, file name), nothing checked or written.
    def scan() -> int:
        df = read_raw(spark, cfg.input, resolve_contract(cfg), None).df
        row = df.select(F.sum(F.hash(*df.columns))).first()
        return int(row[0] or 0) if row is not None else 0

    t["scan"], _ = timed(scan)
    t["validate"], checked = timed(lambda: validate.run(spark, cfg, ctx))
    # Where validation's time goes (its RunContext stages), before featurize adds its own.
    for stage, seconds in ctx.timings.items():
        t[f"validate:{stage}"] = seconds
    t["featurize"], _ = timed(lambda: featurize.run(spark, cfg, ctx))
    t["train"], _ = timed(lambda: train.run(spark, cfg, ctx))

    features = io.read_table(spark, cfg, "features")
    dates = run_dates(features, None, io.table_name(cfg, "features"))
    features = features.where(F.col(io.DATE_COL).isin(dates))
    members = score.load_members(spark, cfg)
    wide = score.score_wide(features, members, cfg).persist(StorageLevel.MEMORY_AND_DISK)
    t["score"], n_scored = timed(wide.count)

    def write() -> None:
        io.replace_dates(score.to_scores(wide, members, cfg, ctx), cfg, "scores", dates)
        io.replace_dates(score.to_alerts(wide, members, cfg, ctx), cfg, "alerts", dates)

    t["write"], _ = timed(write)
    wide.unpersist()
    t["end_to_end"] = sum(t[s] for s in STAGES)
    t["rows_in"] = float(rows_in)
    t["validated"] = float(checked.validated)
    t["scored"] = float(n_scored)
    return dict(t)


class _Timings(dict[str, float]):
    """A dict of timings that reports each one to ``progress`` as it is set."""

    def __init__(self, progress: Progress | None) -> None:
        super().__init__()
        self._progress = progress

    def __setitem__(self, key: str, value: float) -> None:
        super().__setitem__(key, value)
        if self._progress is not None:
            self._progress(stage=key, value=round(value, 3))


def run(params: dict[str, Any]) -> dict[str, Any]:
    rows, reps = int(params["rows"]), int(params["reps"])
    work = Path(params["workdir"])
    master, partitions = params.get("master", "local[2]"), int(params.get("partitions", 2))
    with_pandas = bool(params.get("pandas", True))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    progress = Progress(work.parent / f"batch_{rows}_progress.jsonl")
    progress(event="start", rows=rows, reps=reps)
    gen_cfg, accounts = generate_config(rows, work, master, partitions)
    spark = build_session(gen_cfg.spark, app_name="lakehound-bench-batch")
    gen_s, _ = timed(
        lambda: generate.run(spark, gen_cfg, RunContext(job="bench-generate", date=None))
    )
    progress(stage="generate", value=round(gen_s, 3))
    reps_out: list[dict[str, float]] = []
    with HeapPoller(spark) as heap:
        for i in range(reps):
            lh = work / f"lh_{i}"
            cfg = load_config(
                "conf/transactions.yaml",
                [
                    f"lakehouse={lh}",
                    f"input.path={work / 'raw'}",
                    # Score every generated row, including the training window.
                    *spark_overrides(master, partitions),
                ],
            )
            rep = one_repetition(spark, cfg, progress)
            shutil.rmtree(lh, ignore_errors=True)
            if with_pandas:
                pd_t = pandas_pipeline.run(work / "raw", work / f"pandas_{i}", cfg)
                progress(stage="pandas", value=pd_t)
                rep.update({f"pandas_{k}": v for k, v in pd_t.items()})
                shutil.rmtree(work / f"pandas_{i}", ignore_errors=True)
            reps_out.append(rep)
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)
    n = reps_out[0]["rows_in"]
    seconds = {k: median([r[k] for r in reps_out]) for k in ["count", *STAGES, "end_to_end"]}
    # Stages of the validate job, and the full scan (absent from older runs' results).
    validate_parts = {
        k: median([r[k] for r in reps_out])
        for k in reps_out[0]
        if k == "scan" or k.startswith("validate:")
    }
    extra: dict[str, Any] = {}
    if with_pandas:
        pandas_s = {
            k: median([r[f"pandas_{k}"] for r in reps_out]) for k in [*STAGES, "end_to_end"]
        }
        extra["pandas"] = {
            "seconds": {k: round(v, 3) for k, v in pandas_s.items()},
            "rows_per_second": {k: round(n / v, 1) for k, v in pandas_s.items() if v > 0},
            "rows_scored": reps_out[0]["pandas_rows_scored"],
        }
        # Throughput of Spark's end to end over pandas' (> 1: Spark is faster).
        extra["spark_vs_pandas_end_to_end"] = round(
            paired_ratio(
                [r["pandas_end_to_end"] for r in reps_out], [r["end_to_end"] for r in reps_out]
            ),
            3,
        )
    return {
        "rows": int(n),
        "requested_rows": rows,
        "accounts": accounts,
        "days": DAYS,
        "reps": reps,
        "master": master,
        "generate_seconds": round(gen_s, 2),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "rows_per_second": {k: round(n / v, 1) for k, v in seconds.items() if v > 0},
        "validate_over_count": round(
            paired_ratio([r["validate"] for r in reps_out], [r["count"] for r in reps_out]), 3
        ),
        "validate_over_scan": round(
            paired_ratio([r["validate"] for r in reps_out], [r["scan"] for r in reps_out]), 3
        ),
        "validate_seconds": {k: round(v, 3) for k, v in validate_parts.items()},
        "peak_jvm_heap_used_mib": round(heap.peak / 2**20, 1),
        **extra,
        "repetitions": reps_out,
    }


if __name__ == "__main__":
    emit(run(worker_args()))
