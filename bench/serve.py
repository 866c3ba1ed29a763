"""Benchmark of the real-time endpoint (jobs/serve.py) with a real HTTP client.

    python -m bench.serve [--workdir /tmp/lakehound-bench-serve] [--rates 250,500,750,1000]
        [--seconds 15] [--batches 20]

Builds the demo lakehouse once (generate + pipeline: Isolation Forest 100 trees +
z-score ensemble; ``--set generate.accounts=...`` for a smaller one) and five more
generated days as the events to send (cycled when a run needs more: fresh ids, and
each pass moved on by the days the events span, so the replay is a stream that goes
on rather than the same days over again, which would pile duplicates onto the same
windows and make most events anomalous), starts the server as its own process, and
measures after a warm-up:

* single-event requests at fixed rates (open loop: a request leaves at its
  scheduled time whether or not the previous ones answered): client-side and
  server-side (``latency_ms`` of the answer) p50 / p99, errors;
* 1,000-event requests back to back: events per second;
* the cost of one ``fsync`` of a small append on the lakehouse's disk (the write-ahead
  log's floor for a single event) and the load average, in the same run;
* the same for a minimal FastAPI wrapper around scikit-learn's ``score_samples``
  of the same Isolation Forest on precomputed features (no validation, no online
  features, no ensemble, no log): what those cost.

The client is httpx (asyncio) in this process; on this 2-core machine it shares
the cores with the server, so the rates it can keep up are a floor of the server's.
Prints a markdown table and writes it, with the raw numbers, to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

# At module level: FastAPI resolves the endpoint's annotations from here.
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from lakehound.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "transactions.yaml"


def _run(*args: str) -> None:
    subprocess.run([sys.executable, "-m", *args], cwd=ROOT, check=True)


def build(work: Path, extra: list[str]) -> list[str]:
    """The demo lakehouse (once) and its overrides (``extra``: more ``--set`` ones)."""
    sets = [f"lakehouse={work / 'lakehouse'}", f"input.path={work / 'raw'}", *extra]
    flags = [a for s in sets for a in ("--set", s)]
    if not (work / "lakehouse" / "transactions" / "models").exists():
        _run("jobs.generate", "--config", str(CONF), *flags)
        _run("jobs.pipeline", "--config", str(CONF), *flags)
    if not (work / "new").exists():
        _run("jobs.generate", "--config", str(CONF), *flags, "--set", f"input.path={work / 'new'}",
             "--set", "generate.start_date=2024-01-15", "--set", "generate.days=5",
             "--set", f"labels_path={work / 'new_labels'}")  # fmt: skip
    return sets


def events(work: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for part in sorted((work / "new").rglob("*.csv")):
        with part.open(newline="", encoding="utf-8") as fh:
            rows.extend(csv.DictReader(fh))
    return sorted(rows, key=lambda r: r["event_ts"])


TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def replay(evts: list[dict[str, str]], run: str) -> Any:
    """``take(n)``: the next ``n`` events of the endless replay (see the module doc)."""
    times = [dt.datetime.strptime(e["event_ts"], TS_FORMAT) for e in evts]
    days = (times[-1].date() - times[0].date()).days + 1 if times else 0
    span = dt.timedelta(days=days)
    used = 0

    def take(n: int) -> list[dict[str, str]]:
        nonlocal used
        out = []
        for k in range(used, used + n):
            p, e = divmod(k, len(evts))
            ts = (times[e] + p * span).strftime(TS_FORMAT)[:-4] + "Z"
            out.append({**evts[e], "transaction_id": f"{evts[e]['transaction_id']}-{run}-{p}",
                        "event_ts": ts})  # fmt: skip
        used += n
        return out

    return take


def fsync_cost(directory: Path, n: int = 200) -> dict[str, float]:
    """One small append + fsync, as the write-ahead log does per request: p50 / p99 ms."""
    path = directory / f".fsync-probe-{os.getpid()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    took = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 1200 + b"\n")
            t0 = time.perf_counter()
            os.fsync(fd)
            took.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    return {"fsync_p50_ms": pct(took, 50), "fsync_p99_ms": pct(took, 99)}


def wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise SystemExit("server not ready")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# Requests on the wire at once (httpx's pool size): beyond it a request waits for a
# slot, its client latency counting from its scheduled time. Thousands of requests
# queued in httpx's own pool make the client, not the server, the bottleneck (its
# wait list is scanned on every release: the client at 100% CPU, the server idle).
IN_FLIGHT = 256


async def fixed_rate(url: str, bodies: list[Any], rate: float, seconds: float) -> dict[str, Any]:
    """Open loop: request i is scheduled at start + i / rate (see ``IN_FLIGHT``)."""
    n = int(rate * seconds)
    client_ms: list[float] = []
    server_ms: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    slots = asyncio.Semaphore(IN_FLIGHT)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one(body: Any) -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                async with slots:
                    r = await client.post(f"{url}/invocations", json=body)
            except httpx.HTTPError:
                errors += 1
                return
            client_ms.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                errors += 1
                return
            lat = r.json().get("latency_ms")
            if lat is not None:
                server_ms.append(float(lat))

        start = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(bodies[i % len(bodies)])))
        await asyncio.gather(*tasks)
        took = time.perf_counter() - start
    return {
        "rate": rate, "requests": n, "achieved_rps": n / took, "errors": errors,
        "client_p50_ms": pct(client_ms, 50), "client_p99_ms": pct(client_ms, 99),
        "server_p50_ms": pct(server_ms, 50), "server_p99_ms": pct(server_ms, 99),
    }  # fmt: skip


def batches(url: str, bodies: list[Any], content: str = "json") -> dict[str, Any]:
    with httpx.Client(timeout=120) as client:
        n = 0
        t0 = time.perf_counter()
        for b in bodies:
            r = client.post(f"{url}/invocations", json=b)
            r.raise_for_status()
            n += len(b)
        took = time.perf_counter() - t0
    return {"requests": len(bodies), "events": n, "events_per_s": n / took}


# ---------------------------------------------------------------------------
# The baseline: scikit-learn's score_samples behind a minimal FastAPI app.
# ---------------------------------------------------------------------------


def baseline_app(model_pkl: str) -> Any:
    with open(model_pkl, "rb") as fh:
        forest = pickle.load(fh).detector.model_
    app = FastAPI()

    @app.post("/invocations")
    async def invocations(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        X = np.asarray(json.loads(await request.body()), dtype=np.float64)
        single = X.ndim == 1
        scores = -forest.score_samples(X.reshape(1, -1) if single else X)
        ms = (time.perf_counter() - t0) * 1000
        if single:
            return JSONResponse({"score": float(scores[0]), "latency_ms": ms})
        return JSONResponse({"scores": scores.tolist(), "latency_ms": ms})

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _model_and_features(lakehouse: Path) -> tuple[str, list[list[float]]]:
    from deltalake import DeltaTable

    table = lakehouse / "transactions"
    reg = [
        r for r in DeltaTable(str(table / "models")).to_pyarrow_table().to_pylist()
        if r["detector"] == "isolation_forest" and r["status"] == "production"
    ]  # fmt: skip
    model = reg[-1]
    # Registry rows hold the artifact relative to the dataset's table directory.
    artifact = Path(model["artifact_path"])
    artifact = artifact if artifact.is_absolute() else table / artifact
    feats = DeltaTable(str(table / "features")).to_pyarrow_table(columns=model["features"])
    X = np.column_stack([feats.column(c).to_numpy() for c in model["features"]])
    # Bare score_samples refuses NaN (the bundle imputes it): complete rows only.
    X = X[np.isfinite(X).all(axis=1)][:20_000]
    return str(artifact / "model.pkl"), X.tolist()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.serve")
    p.add_argument("--workdir", default="/tmp/lakehound-bench-serve")
    p.add_argument("--rates", default="50,100,250,500")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--batches", type=int, default=15)
    p.add_argument("--out", default=str(ROOT / "bench" / "serve.json"))
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for the demo lakehouse (e.g. generate.accounts=500)",
    )
    p.add_argument(
        "--baseline-only", action="store_true",
        help="measure the baseline again, keep the LakeHound figures already in --out",
    )  # fmt: skip
    p.add_argument("--baseline-app", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.baseline_app:
        import uvicorn

        uvicorn.run(baseline_app(args.baseline_app), host="127.0.0.1", port=args.port,
                    log_level="warning")  # fmt: skip
        return 0
    work = Path(args.workdir)
    sets = build(work, args.sets)
    evts = events(work)
    rates = [float(r) for r in args.rates.split(",")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results: dict[str, Any] = {"lakehound": {}, "baseline": {}, "machine": {}}
    results["machine"]["load_average_start"] = list(os.getloadavg())
    results["machine"].update(fsync_cost(work / "lakehouse"))

    if args.baseline_only:
        results["lakehound"] = json.loads(Path(args.out).read_text())["lakehound"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = None if args.baseline_only else subprocess.Popen(
        [sys.executable, "-m", "jobs.serve", "--config", str(CONF), "--port", str(port),
         *[a for s in sets for a in ("--set", s)], "--set", "serve.access_log=false",
         "--set", "spark.driver_memory=1g", "--set", "spark.master=local[1]"],
        cwd=ROOT, env=env,
    )  # fmt: skip

    def measure_lakehound(server: subprocess.Popen[bytes]) -> None:
        wait(url, server)
        take = replay(evts, f"{int(time.time()) % 100_000:05d}")

        asyncio.run(fixed_rate(url, take(300), 100, 3))  # warm-up
        for rate in rates:
            r = asyncio.run(fixed_rate(url, take(int(rate * args.seconds)), rate, args.seconds))
            results["lakehound"][f"single@{int(rate)}"] = r
            print(json.dumps(r), flush=True)
        bodies = [take(1000) for _ in range(args.batches)]
        results["lakehound"]["batch1000"] = batches(url, bodies)
        print(json.dumps(results["lakehound"]["batch1000"]), flush=True)

    try:
        if server is not None:
            measure_lakehound(server)
    finally:
        if server is not None:
            server.terminate()
            server.wait(300)

    model_pkl, X = _model_and_features(work / "lakehouse")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    base = subprocess.Popen(
        [sys.executable, "-m", "bench.serve", "--baseline-app", model_pkl, "--port", str(port)],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        wait(url, base)
        asyncio.run(fixed_rate(url, X[:300], 100, 3))
        for rate in rates:
            r = asyncio.run(fixed_rate(url, X, rate, args.seconds))
            results["baseline"][f"single@{int(rate)}"] = r
            print(json.dumps(r), flush=True)
        # Cycled: the small lakehouse's features table has fewer rows than the batches.
        xb = [[X[k % len(X)] for k in range(i * 1000, (i + 1) * 1000)] for i in range(args.batches)]
        results["baseline"]["batch1000"] = batches(url, xb)
    finally:
        base.terminate()
        base.wait(60)
    results["machine"]["load_average_end"] = list(os.getloadavg())
    results["machine"].update({f"end_{k}": v for k, v in fsync_cost(work / "lakehouse").items()})
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(render(results, rates))
    return 0


def render(results: dict[str, Any], rates: list[float]) -> str:
    lines = [
        "| endpoint | load | achieved req/s | server p50 / p99 ms | client p50 / p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|",
    ]
    names = {
        "lakehound": "LakeHound /invocations (raw event)",
        "baseline": "sklearn score_samples (features)",
    }
    for key, name in names.items():
        for rate in rates:
            r = results[key].get(f"single@{int(rate)}")
            if not r:
                continue
            lines.append(
                f"| {name} | 1 event, {int(rate)} req/s | {r['achieved_rps']:.0f} | "
                f"{r['server_p50_ms']:.1f} / {r['server_p99_ms']:.1f} | "
                f"{r['client_p50_ms']:.1f} / {r['client_p99_ms']:.1f} | {r['errors']} |"
            )
        b = results[key]["batch1000"]
        lines.append(
            f"| {name} | 1,000-event requests | {b['events_per_s']:,.0f} events/s | | | 0 |"
        )
    sustained = [
        r for k, r in results["lakehound"].items()
        if k.startswith("single@") and r["client_p99_ms"] <= 50 and r["errors"] == 0
        and r["achieved_rps"] >= 0.95 * r["rate"]
    ]  # fmt: skip
    best = max((r["rate"] for r in sustained), default=None)
    lines.append("")
    verdict = f"{int(best)} req/s" if best else "none of the rates tried"
    lines.append(f"Highest single-event rate with client p99 <= 50 ms and no errors: {verdict}.")
    m = results.get("machine") or {}
    if m:
        lines.append(
            f"fsync of a small append on this disk: p50 {m['fsync_p50_ms']:.2f} ms, "
            f"p99 {m['fsync_p99_ms']:.2f} ms; load average "
            f"{m['load_average_start'][0]:.1f} (start), {m.get('load_average_end', [float('nan')])[0]:.1f} (end)."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
