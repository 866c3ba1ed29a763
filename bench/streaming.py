"""Live-scoring latency: produce to Kafka at a fixed rate, measure until the event's
scores and alerts are committed in Delta.

    python -m bench.streaming --params '{"rates": [1000, 5000], "seconds": 30}'

Starts its own KRaft broker (scripts/kafka/kafka.sh, jars from `make kafka-setup`) and
a trained lakehouse (three days of history of ``ACCOUNTS`` accounts), then for each rate: a
console producer (its own JVM) is fed JSON events paced from this process, which
records each event's send time; the scoring query (jobs.stream, same code as
production, in this process) records the wall clock at which each micro-batch's
MERGE into ``scores``/``alerts`` committed. Latency of an event = commit time of its
batch (from its ``run_id`` in ``scores``) - its send time. After the producer stops,
the stream runs until it has committed every event (at most ``DRAIN_SECONDS``), so
the percentiles cover every event, not only those a fixed run got to. Each rate runs
on a freshly built lakehouse of its own. "Sustained": see :func:`sustained`
(everything committed, latency not growing along the run).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from lakehound.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "scripts" / "kafka" / "kafka.sh"
# A card issuer's mix, not a handful of entities doing thousands of payments each
# (with 200 accounts, each paid 25 times a second at 5,000 events/s and its range-frame
# windows held thousands of rows). Every account pays about three times a day of event
# time, as in its history, so event time runs ahead of the wall clock (one event per
# 1.44 s); live, 5,000 events/s at that pace would come from millions of accounts.
# 1% of the events carry a planted large amount; the models also flag more and more
# events once event time runs days past their two-day training window (README).
ACCOUNTS, MERCHANTS = 20_000, 1_000
PER_ACCOUNT_DAY = 3
EVENT_SPACING = dt.timedelta(days=1) / (PER_ACCOUNT_DAY * ACCOUNTS)
START = dt.datetime(2024, 1, 4)
# How long the stream may run after the producer stops, to commit what it was sent.
DRAIN_SECONDS = 240.0
# Fewer micro-batches than this in a rate's run say nothing about a growing lag
# (:func:`sustained`): such a run is not counted as sustained.
MIN_VERDICT_BATCHES = 5
# What a result was measured on: results of separate invocations are repetitions of
# one another only if this and the seconds per rate are the same (bench.run --merge).
WORKLOAD = {"accounts": ACCOUNTS, "merchants": MERCHANTS, "per_account_day": PER_ACCOUNT_DAY,
            "drain_seconds": DRAIN_SECONDS}  # fmt: skip


def event(i: int, prefix: str, rnd: random.Random) -> str:
    return json.dumps(
        {
            "transaction_id": f"{prefix}{i}",
            "account_id": f"acct-{rnd.randrange(ACCOUNTS):06d}",
            "merchant_id": f"m-{rnd.randrange(MERCHANTS):05d}",
            "merchant_category": "grocery",
            "amount": 90_000.0 if i % 100 == 99 else round(rnd.uniform(5, 120), 2),
            "currency": "EUR",
            "country": "DE",
            "channel": "pos",
            "event_ts": (START + i * EVENT_SPACING).isoformat() + "Z",
        }
    )


def build_lakehouse(spark: Any, cfg: Any) -> None:
    """History in ``validated`` (3 days, each account paying ``PER_ACCOUNT_DAY`` times a
    day at random times), then the batch featurize and train jobs."""
    from jobs import featurize, train
    from lakehound import io
    from lakehound.cli import RunContext
    from schemas.outputs import validated_contract
    from schemas.transactions import TRANSACTIONS

    rnd = random.Random(7)
    rows = []
    for day in range(3):
        for a in range(ACCOUNTS):
            for k in range(PER_ACCOUNT_DAY):
                ts = dt.datetime(2024, 1, 1 + day) + dt.timedelta(seconds=rnd.randrange(86400))
                rows.append((f"h{day}-{a}-{k}", f"acct-{a:06d}", f"m-{rnd.randrange(MERCHANTS):05d}",
                             "grocery", round(rnd.uniform(5, 120), 2), "EUR", "DE", "pos", ts,
                             ts.date(), "history"))  # fmt: skip
    df = spark.createDataFrame(rows, validated_contract(TRANSACTIONS).schema())
    df.write.format("delta").partitionBy("event_date").save(io.table_path(cfg, "validated"))
    featurize.run(spark, cfg, RunContext("featurize", None))
    train.run(spark, cfg, RunContext("train", None))


def produce(bootstrap: str, topic: str, prefix: str, rate: int, seconds: float) -> dict[str, float]:
    """Feed a console producer ``rate`` events/s for ``seconds``; event id -> send time."""
    proc = subprocess.Popen(
        ["java", "-Xmx256m", "-cp", str(ROOT / ".cache" / "kafka" / "*"), "kafka.tools.ConsoleProducer",
         "--bootstrap-server", bootstrap, "--topic", topic,
         "--producer-property", "linger.ms=5", "--producer-property", "acks=1"],
        stdin=subprocess.PIPE, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdin is not None
    rnd = random.Random(rate)
    sent: dict[str, float] = {}
    start = time.time()
    tick = 0.05  # send in 50 ms slices
    i = 0
    while time.time() - start < seconds:
        due = int((time.time() - start + tick) * rate)
        lines = []
        while i < due:
            lines.append(event(i, prefix, rnd))
            i += 1
        now = time.time()
        proc.stdin.write("\n".join(lines) + "\n" if lines else "")
        proc.stdin.flush()
        for j in range(i - len(lines), i):
            sent[f"{prefix}{j}"] = now
        time.sleep(max(0.0, start + (i / rate) - time.time()))
    proc.stdin.close()
    proc.wait(60)
    return sent


def commit_floor(spark: Any, cfg: Any, repeats: int = 12) -> dict[str, float]:
    """The least any micro-batch that commits to Delta costs on this machine: one
    insert-only MERGE of a single new row through the scoring query's own sink
    (:func:`merge_insert` into ``scores``), and one plain append of a row, into a
    table of 10,000 rows. Medians over ``repeats`` rounds after two warm-up rounds."""
    from lakehound import io
    from lakehound.streaming.sinks import merge_insert

    schema = "event_id string, detector string, score double, event_ts timestamp, event_date date"

    def rows(prefix: str, n: int, first: int = 0) -> Any:
        at = [START + dt.timedelta(seconds=first + i) for i in range(n)]
        data = [(f"{prefix}{first + i}", "ensemble", 0.5, t, t.date()) for i, t in enumerate(at)]
        return spark.createDataFrame(data, schema)

    merge_insert(rows("e", 10_000), cfg, "scores")
    merges, appends = [], []
    for k in range(repeats + 2):
        one = rows("m", 1, first=k)
        ts = START + dt.timedelta(seconds=k)
        started = time.perf_counter()
        merge_insert(one, cfg, "scores", dates=[ts.date()], event_ts_range=(ts, ts))
        merges.append(time.perf_counter() - started)
        one = rows("a", 1, first=k)
        started = time.perf_counter()
        one.write.format("delta").mode("append").save(io.table_path(cfg, "scores"))
        appends.append(time.perf_counter() - started)
    return {
        "merge_one_row_seconds": round(statistics.median(merges[2:]), 3),
        "append_one_row_seconds": round(statistics.median(appends[2:]), 3),
    }


class StallWatch(threading.Thread):
    """Evidence for a stalled micro-batch. While the scoring query runs, a batch the
    job's progress reports as slow (``SLOW_BATCH_FACTOR`` times the median of the recent
    batches, at least ``SLOW_BATCH_SECONDS``: :func:`lakehound.streaming.progress.slow_batch`)
    gets a dump in ``out``: the driver JVM's threads (jstack), this process's Python threads,
    Spark's active stages and the process tree. Repeated every ``every`` seconds while
    the batch lasts (at most ``limit`` dumps), so two dumps show what moved."""

    def __init__(self, spark: Any, scorer: Any, out: Path, every: float = 60.0, limit: int = 4):
        super().__init__(daemon=True, name="stall-watch")
        self.spark, self.scorer, self.out = spark, scorer, out
        self.every, self.limit = every, limit
        self.pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
        self.done = threading.Event()
        self.dumps: list[str] = []

    def run(self) -> None:
        from lakehound.streaming.progress import slow_batch

        last = 0.0
        while not self.done.wait(2.0) and len(self.dumps) < self.limit:
            running = self.scorer.running
            slow = slow_batch(running, self.scorer.recent_seconds(), time.time())
            if slow and time.time() - last >= self.every:
                last = time.time()
                self.dumps.append(str(self.dump(running)))

    def dump(self, running: tuple[int, float]) -> Path:
        import traceback

        self.out.mkdir(parents=True, exist_ok=True)
        batch_id, since = running
        path = self.out / f"batch{batch_id}-{int(time.time() - since)}s.txt"
        parts = [f"batch {batch_id} running for {time.time() - since:.0f} s at {time.ctime()}"]
        tracker = self.spark.sparkContext.statusTracker()
        for sid in tracker.getActiveStageIds():
            info = tracker.getStageInfo(sid)
            if info is not None:
                parts.append(f"stage {sid} {info.name}: {info.numActiveTasks} running, "
                             f"{info.numCompletedTasks}/{info.numTasks} done")  # fmt: skip
        frames = sys._current_frames()
        for th in threading.enumerate():
            frame = frames.get(th.ident or -1)
            if frame is not None:
                parts.append(
                    f"--- python thread {th.name}\n" + "".join(traceback.format_stack(frame))
                )
        ps = ["ps", "-eo", "pid,ppid,stat,etimes,pcpu,rss,args", "--sort", "pid"]
        parts.append(subprocess.run(ps, capture_output=True, text=True, timeout=30).stdout)
        jstack = subprocess.run(["jstack", "-l", str(self.pid)], capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        parts.append(jstack.stdout or jstack.stderr)
        path.write_text("\n\n".join(parts))
        return path


def quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def measure(spark: Any, cfg: Any, rate: int, seconds: float, bootstrap: str) -> dict[str, Any]:
    from jobs import stream
    from lakehound.cli import RunContext
    from lakehound.streaming.batch import BatchScorer
    from schemas.registry import get_contract

    topic = f"bench_{rate}"
    prefix = f"R{rate}-"
    run_cfg = cfg.model_copy(update={"stream": cfg.stream.model_copy(update={"topic": topic})})
    ctx = RunContext("stream", None)
    scorer = BatchScorer(run_cfg, get_contract(cfg.validation.contract), query_run=ctx.run_id)
    stop = threading.Event()
    runner = threading.Thread(
        target=stream.run,
        args=(spark, run_cfg, ctx),
        kwargs={"timeout": 20 + seconds + DRAIN_SECONDS + 120, "scorer": scorer, "stop": stop},
        daemon=True,
    )  # fmt: skip
    runner.start()
    watch = StallWatch(spark, scorer, Path(cfg.lakehouse).parent / f"stalls_{rate}")
    watch.start()
    time.sleep(20)  # the queries start and the first (empty) batches warm up
    sent = produce(bootstrap, topic, prefix, rate, seconds)
    # Every event is measured: the stream runs on until it has committed all it was
    # sent (all batches end with their commit), or for DRAIN_SECONDS at most.
    produced_at = time.time()
    while time.time() - produced_at < DRAIN_SECONDS and runner.is_alive():
        if scorer.totals.get("rows", 0) >= len(sent):
            break
        time.sleep(0.5)
    stop.set()
    runner.join(600)
    watch.done.set()
    from pyspark.sql import functions as F

    from lakehound import io

    batches = {
        r["run_id"]: r["n"]
        for r in io.read_table(spark, cfg, "scores")
        .where(F.col("event_id").startswith(prefix) & (F.col("detector") == "ensemble"))
        .groupBy("run_id").agg(F.collect_list("event_id").alias("n")).collect()
    }  # fmt: skip
    lat = []
    by_send: list[tuple[float, float]] = []  # (sent at, latency) per committed event
    committed = 0
    done_at: list[float] = []
    for run_id, ids in batches.items():
        batch_id = int(run_id.rsplit("-", 1)[1])
        done = scorer.by_batch.get(batch_id, {}).get("committed_at")
        if done is None:
            continue
        done_at.append(done)
        for e in ids:
            if e in sent:
                lat.append(done - sent[e])
                by_send.append((sent[e], done - sent[e]))
                committed += 1
    busy = [c for c in scorer.by_batch.values() if c.get("rows")]
    durations = [c["seconds"] for c in busy]
    # Median seconds per stage of the micro-batch (classify, features_and_scores, writes, ...).
    stage_names = sorted({k for c in busy for k in c.get("stage_seconds", {})})
    stages = {
        k: round(
            quantile([c["stage_seconds"][k] for c in busy if k in c.get("stage_seconds", {})], 0.5),
            3,
        )
        for k in stage_names
    }
    growth = lag_growth(by_send)
    median_batch = quantile(durations, 0.5)
    return {
        "rate": rate,
        "produced": len(sent),
        "scored_within_run": committed,
        # From the producer's last send to the last commit of the rate's events.
        "drain_seconds": round(max(done_at) - produced_at, 3) if done_at else None,
        "p50_seconds": round(quantile(lat, 0.5), 3),
        "p99_seconds": round(quantile(lat, 0.99), 3),
        "max_seconds": round(max(lat), 3) if lat else None,
        "batches": len(durations),
        "median_batch_seconds": round(median_batch, 3),
        "median_stage_seconds": stages,
        "median_batch_rows": int(quantile([c["rows"] for c in busy], 0.5)) if busy else 0,
        "lag_growth_seconds": None if math.isnan(growth) else round(growth, 3),
        "sustained": sustained(committed, len(sent), growth, median_batch, len(durations)),
        # Thread dumps of batches that ran far longer than the others (StallWatch).
        "stall_dumps": watch.dumps,
    }


def lag_growth(by_send: list[tuple[float, float]]) -> float:
    """Median latency of the last quarter of the events sent minus that of the first
    quarter: about 0 while the stream keeps up, growing with the run when it does not."""
    if len(by_send) < 8:
        return float("nan")
    ordered = [lat for _, lat in sorted(by_send)]
    q = len(ordered) // 4
    return quantile(ordered[-q:], 0.5) - quantile(ordered[:q], 0.5)


def sustained(
    committed: int, produced: int, growth: float, median_batch: float, batches: int
) -> bool:
    """Kept up: (nearly) everything produced was committed, and the lag grew by less
    than half a micro-batch from the first quarter of the run to the last. One event's
    latency varies by up to a batch with where it falls in the batch cycle, but the
    median of a quarter's thousands of events sits mid-cycle in both quarters; a
    stream that falls behind grows its batches and its lag together, so a whole batch
    as the tolerance would let it pass. That holds only with several batches per
    quarter of the run: below ``MIN_VERDICT_BATCHES`` a quarter is one batch or part
    of one, its median is wherever that batch's events fell in its cycle, and a
    stream far behind could pass (a 3-batch run at 5,000 events/s did, p50 197 s)."""
    if produced == 0 or committed < 0.99 * produced or math.isnan(growth):
        return False
    if batches < MIN_VERDICT_BATCHES:
        return False
    return growth < max(median_batch / 2, 1.0)


def main() -> None:
    from bench.common import emit, worker_args

    params = worker_args()
    rates = [int(r) for r in params.get("rates", [1000, 5000])]
    seconds = float(params.get("seconds", 30))
    work = Path(params.get("workdir") or tempfile.mkdtemp(prefix="lakehound-bench-stream-"))
    port = free_port(adjacent=2)
    env = {**os.environ, "KAFKA_PORT": str(port)}
    subprocess.run([str(KAFKA_SH), "start", str(work / "kafka")], env=env, check=True, timeout=120)
    try:
        from lakehound.config import load_config
        from lakehound.session import build_session

        def config(rate: int | str) -> Any:
            return load_config(ROOT / "conf" / "transactions.yaml", [
                f"lakehouse={work / f'lakehouse_{rate}'}", "spark.master=local[2]",
                "spark.shuffle_partitions=2", "spark.log_level=ERROR", "train.train_days=2",
                "train.tuning.enabled=false", "train.supervised.enabled=false",
                "stream.source=kafka", f"stream.bootstrap_servers=127.0.0.1:{port}",
                "stream.trigger_interval=0 seconds", "stream.progress_seconds=5",
            ])  # fmt: skip

        spark = build_session(config(rates[0]).spark, app_name="lakehound-bench-streaming")
        # The latency below next to the least one Delta commit costs here.
        floor = commit_floor(spark, config("commit_floor"))
        runs = []
        for rate in rates:
            # A fresh lakehouse per rate: every rate starts from the same history, not
            # from the events (and small files) the previous rate left behind.
            cfg = config(rate)
            build_lakehouse(spark, cfg)
            runs.append(measure(spark, cfg, rate, seconds, f"127.0.0.1:{port}"))
        sustained = [r["rate"] for r in runs if r["sustained"]]
        emit({"runs": runs, "seconds_per_rate": seconds, "workload": WORKLOAD, "commit_floor": floor,
              "highest_sustained_rate": max(sustained) if sustained else None})  # fmt: skip
    finally:
        subprocess.run([str(KAFKA_SH), "stop", str(work / "kafka")], env=env, timeout=120)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
