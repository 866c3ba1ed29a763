"""The endpoint as a real process over real HTTP: parity with featurize + score,
bad events, content types, limits, the token, and a SIGKILL losing nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehound import io
from lakehound.features.build import build_features
from lakehound.features.registry import feature_names
from lakehound.scoring import load_members, score_wide
from lakehound.serving.service import wal_dir
from schemas.registry import get_contract
from tests.serving.conftest import NEW_DAY, ROOT, Lakehouse, Server

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _post(server: Server, body: Any, ctype: str = "application/json", **kw: Any) -> httpx.Response:
    content = body if isinstance(body, str | bytes) else json.dumps(body)
    headers = {"content-type": ctype, **AUTH, **kw.pop("headers", {})}
    return httpx.post(
        f"{server.url}/invocations", content=content, headers=headers, timeout=60, **kw
    )


def _ties(events: pd.DataFrame) -> set[str]:
    """Events sharing their second with another event of the same account or merchant:
    batch frames include such a tie whatever the arrival order, the online state
    only if it came first (documented in lakehound.serving.online)."""
    sec = events["event_ts"].dt.floor("s")
    out: set[str] = set()
    for col in ("account_id", "merchant_id"):
        dup = events.assign(_s=sec).duplicated([col, "_s"], keep=False)
        out |= set(events.loc[dup, "transaction_id"])
    return out


def test_one_by_one_equals_featurize_and_score(
    spark: SparkSession, lakehouse: Lakehouse, server_factory: Callable[..., Server]
) -> None:
    server = server_factory("serve.max_batch_events=50", env={"LAKEHOUND_SERVE_TOKEN": TOKEN})
    events = sorted(lakehouse.new_events, key=lambda e: e["event_ts"])
    answers: dict[str, dict[str, Any]] = {}
    with httpx.Client(headers=AUTH, timeout=60) as client:
        for e in events:
            r = client.post(f"{server.url}/invocations?features=true", json=e)
            assert r.status_code in (200, 400), r.text
            answers[e["transaction_id"]] = r.json()
    accepted = [e for e in events if "severity" in answers[e["transaction_id"]]]
    rejected = [e for e in events if "reasons" in answers[e["transaction_id"]]]
    assert len(accepted) >= 200

    # The same events through the batch code: typed by the contract, featurized over
    # the validated history, scored by the Spark path of the scoring core.
    cfg = lakehouse.cfg()
    contract = get_contract(cfg.validation.contract)
    schema = ", ".join(f"`{c}` string" for c in contract.column_names)
    raw = spark.createDataFrame(
        [[e.get(c) for c in contract.column_names] for e in accepted], schema
    )
    new = raw.select(*[F.col(f.name).cast(f.dtype).alias(f.name) for f in contract.fields])
    new = new.withColumn(io.DATE_COL, F.to_date("event_ts")).withColumn("_in", F.lit(True))
    past = io.read_table(spark, cfg, "validated").select(*contract.column_names, io.DATE_COL)
    window = new.unionByName(past.withColumn("_in", F.lit(False)))
    day = dt.date.fromisoformat(NEW_DAY)
    # With the labels table, as the featurize job does (merchant_risk_7d).
    labels = io.read_table(spark, cfg, "labels")
    feats = build_features(window, cfg, [day], labels=labels, emit=F.col("_in")).cache()
    wide = score_wide(feats, load_members(spark, cfg), cfg)
    names = feature_names("transactions")
    want_feats = {r["event_id"]: r for r in feats.select("event_id", *names).collect()}
    expected = {
        r["event_id"]: r
        for r in wide.select(
            "event_id",
            "_ens_severity",
            F.col("isolation_forest.severity").alias("if_severity"),
            F.col("zscore.severity").alias("z_severity"),
        ).collect()
    }
    history = past.select("transaction_id", "account_id", "merchant_id", "event_ts").toPandas()
    both = pd.concat([history, new.select(*history.columns).toPandas()], ignore_index=True)
    ties = _ties(both)
    assert len(ties) < len(accepted) / 10
    compared = 0
    for e in accepted:
        eid = e["transaction_id"]
        if eid in ties:
            continue
        got, want = answers[eid], expected[eid]
        for c in names:
            assert got["features"][c] == pytest.approx(want_feats[eid][c], rel=1e-6, abs=1e-6), (
                eid,
                c,
            )
        assert got["severity"] == pytest.approx(want["_ens_severity"], abs=1e-6), eid
        assert got["detectors"]["isolation_forest"]["severity"] == pytest.approx(
            want["if_severity"], abs=1e-6
        )
        assert got["detectors"]["zscore"]["severity"] == pytest.approx(want["z_severity"], abs=1e-6)
        assert got["alert"] == (want["_ens_severity"] >= cfg.scoring.alert_severity)
        assert got["feature_registry_version"] and got["model_version"]
        assert got["latency_ms"] > 0
        compared += 1
    assert compared >= 200

    # The generator's own bad rows are refused with the validate job's reasons.
    for e in rejected:
        assert answers[e["transaction_id"]]["reasons"], e

    # -- bad events, content types, limits, token (same process) -------------------
    bad = {**accepted[0], "transaction_id": "bad-1", "account_id": " ", "amount": "-3"}
    r = _post(server, bad)
    assert r.status_code == 400
    assert r.json()["reasons"] == ["missing:account_id", "below_min:amount"]
    good = {**accepted[1], "transaction_id": "ok-1", "event_ts": f"{NEW_DAY}T23:59:30Z"}
    r = _post(server, [good, {**bad, "transaction_id": "bad-2", "currency": "XXX"}])
    assert r.status_code == 200
    res = r.json()["results"]
    assert res[0]["event_id"] == "ok-1" and 0 <= res[0]["severity"] <= 100
    assert res[1]["reasons"] == ["missing:account_id", "below_min:amount", "not_in_set:currency"]
    lines = json.dumps({**good, "transaction_id": "ok-2"}) + "\n{not json\n"
    res = _post(server, lines, "application/jsonlines").json()["results"]
    # As in classify: a record that does not parse also misses every required field.
    assert "severity" in res[0] and res[1]["reasons"][:2] == [
        "malformed_record",
        "missing:transaction_id",
    ]
    cols = list(good)
    csv_body = ",".join(cols) + "\n" + ",".join(str(good[c]) for c in cols).replace("ok-1", "ok-3")
    res = _post(server, csv_body, "text/csv").json()["results"]
    assert res[0]["event_id"] == "ok-3" and "severity" in res[0]
    # The same key again: refused as a duplicate, as validate does.
    assert _post(server, {**good, "transaction_id": "ok-3"}).json()["reasons"] == ["duplicate"]
    assert _post(server, [good] * 51).status_code == 413
    assert _post(server, "a,b", "text/plain").status_code == 415
    assert _post(server, good, headers={"Authorization": "Bearer wrong"}).status_code == 401
    no_token = httpx.post(f"{server.url}/invocations", json=good, timeout=30)
    assert no_token.status_code == 401
    assert httpx.get(f"{server.url}/docs", timeout=30).status_code == 200

    # A clean stop writes the log to Delta: every accepted event once, the bad ones
    # in quarantine with their reasons.
    assert server.stop() == 0
    spark.catalog.clearCache()
    ens = io.read_table(spark, cfg, "scores").where("detector = 'ensemble'")
    ids = Counter(r[0] for r in ens.where(F.col(io.DATE_COL) == day).select("event_id").collect())
    sent = {e["transaction_id"] for e in accepted} | {"ok-1", "ok-2", "ok-3"}
    assert set(ids) == sent and set(ids.values()) == {1}
    stream = io.read_table(spark, cfg, "stream_events").select("transaction_id").collect()
    assert {r[0] for r in stream} == sent
    q = io.read_table(spark, cfg, "quarantine").where(F.col("source_file").startswith("serve:"))
    reasons = {tuple(r["reasons"]) for r in q.collect()}
    assert ("missing:account_id", "below_min:amount", "not_in_set:currency") in reasons
    assert ("duplicate",) in reasons
    assert any(r[0] == "malformed_record" for r in reasons)


def test_sigkill_after_answers_loses_nothing_and_writes_once(
    spark: SparkSession, lakehouse: Lakehouse, server_factory: Callable[..., Server]
) -> None:
    # Nothing reaches Delta while it runs: only the log holds the answered events.
    server = server_factory("serve.flush_seconds=3600")
    base = sorted(lakehouse.new_events, key=lambda e: e["event_ts"])[:30]
    shifted = [
        {**e, "transaction_id": f"k-{i}",
         "event_ts": (dt.datetime.fromisoformat(e["event_ts"].replace("Z", "+00:00"))
                      + dt.timedelta(days=1)).isoformat()}
        for i, e in enumerate(base)
    ]  # fmt: skip
    ok: set[str] = set()
    for chunk in (shifted[:10], shifted[10:20], shifted[20:]):
        r = httpx.post(f"{server.url}/invocations", json=chunk, timeout=60)
        assert r.status_code == 200
        ok |= {x["event_id"] for x in r.json()["results"] if "severity" in x}
    assert len(ok) >= 25
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(30)

    cfg = lakehouse.cfg()
    segments = sorted(wal_dir(cfg).glob("wal-*.jsonl"))
    assert segments
    kept = lakehouse.root / "segment-copy.jsonl"
    shutil.copy(max(segments, key=lambda p: p.stat().st_size), kept)

    def ensemble_ids() -> Counter[str]:
        spark.catalog.clearCache()
        ens = io.read_table(spark, cfg, "scores").where("detector = 'ensemble'")
        return Counter(r[0] for r in ens.where(F.col("event_id").startswith("k-")).collect())

    assert not ensemble_ids()
    # The next start replays the log into Delta before it answers.
    again = server_factory("serve.flush_seconds=3600")
    assert ensemble_ids() == Counter({i: 1 for i in ok})
    # Its state holds them too: the same key is a duplicate.
    dup = httpx.post(f"{again.url}/invocations", json=shifted[0], timeout=60)
    assert dup.json()["reasons"] == ["duplicate"]
    # A segment written to Delta once already (the process died before deleting it)
    # is written again on the next flush: still once per key.
    shutil.copy(kept, wal_dir(cfg) / "wal-000000000000.jsonl")
    assert again.stop() == 0
    assert ensemble_ids() == Counter({i: 1 for i in ok})
    spark.catalog.clearCache()
    events = io.read_table(spark, cfg, "stream_events").where(
        F.col("transaction_id").startswith("k-")
    )
    assert Counter(r[0] for r in events.select("transaction_id").collect()) == Counter(
        {i: 1 for i in ok}
    )


def test_refuses_a_public_bind_without_token(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "jobs.serve", "--config", str(ROOT / "conf" / "transactions.yaml"),
            "--host", "0.0.0.0", "--set", f"lakehouse={tmp_path}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "LAKEHOUND_SERVE_TOKEN"}
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "serve.token" in done.stderr and "LAKEHOUND_SERVE_TOKEN" in done.stderr
