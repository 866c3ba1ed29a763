"""The pure parts of live scoring on static frames: poison messages are quarantined with
their payload and reasons, MERGE sinks are idempotent, webhook delivery retries with
backoff and dead-letters against a real local HTTP server."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import Column, SparkSession

from lakehound import io
from lakehound.config import Config
from lakehound.features.build import build_features, lookback_days
from lakehound.streaming import delivery
from lakehound.streaming.batch import Write, merge_all
from lakehound.streaming.process import (
    STREAM_EVENTS,
    accepted_rows,
    classify_batch,
    features_for,
    history,
    summarize,
)
from lakehound.streaming.sinks import merge_insert, merge_upsert
from lakehound.validation.rules import quarantine_rows
from schemas.transactions import TRANSACTIONS
from tests.streaming.conftest import STREAM_START, Webhook, make_events, poison_messages

NOW = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
SCORES = "event_id string, detector string, severity double, event_date date"


def _batch(spark: SparkSession, payloads: list[str]):  # type: ignore[no-untyped-def]
    rows = [(p, f"kafka:t:0:{i}") for i, p in enumerate(payloads)]
    return spark.createDataFrame(rows, "payload string, source string")


def test_poison_messages_are_quarantined_with_payload_and_reason(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg("transactions", "stream.max_payload_bytes=10000")
    good = [json.dumps(e) for e in make_events("G", 5)]
    bad = poison_messages("p")
    classified = classify_batch(_batch(spark, [*good, *bad.values()]), TRANSACTIONS, cfg, NOW)
    accepted = {r["transaction_id"] for r in accepted_rows(classified, TRANSACTIONS).collect()}
    assert accepted == {f"G{i}" for i in range(5)}
    quarantined = {
        r["raw_record"][:40]: r for r in quarantine_rows(classified, "r1", NOW).collect()
    }
    assert len(quarantined) == len(bad)
    by_kind = {k: quarantined[v[:40]] for k, v in bad.items()}
    # Unparsed messages also miss every required value, as in the batch quarantine.
    assert "malformed_record" in by_kind["not_json"]["reasons"]
    assert "missing:account_id" in by_kind["not_json"]["reasons"]
    assert by_kind["not_json"]["raw_record"] == bad["not_json"]
    assert "malformed_record" in by_kind["not_an_object"]["reasons"]
    assert by_kind["wrong_types"]["reasons"] == ["invalid_type:amount"]
    assert by_kind["huge"]["reasons"][:2] == ["payload_too_large", "malformed_record"]
    # The huge payload is kept, truncated to the configured size.
    assert len(by_kind["huge"]["raw_record"]) == 10000
    assert bad["huge"].startswith(by_kind["huge"]["raw_record"])
    # Quarantine rows point at their Kafka message.
    assert all(r["source_file"].startswith("kafka:t:0:") for r in quarantined.values())


def test_merge_insert_is_idempotent_when_a_batch_is_replayed(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg()
    schema = "event_id string, detector string, severity double, event_date date"
    day = dt.date(2024, 1, 4)
    first = [("a", "ensemble", 10.0, day), ("b", "ensemble", 99.0, day)]
    second = [
        ("b", "ensemble", 99.0, day),
        ("c", "ensemble", 5.0, day),
        ("c", "ensemble", 5.0, day),
    ]
    merge_insert(spark.createDataFrame(first, schema), cfg, "scores")
    merge_insert(spark.createDataFrame(first, schema), cfg, "scores")  # the replay
    merge_insert(spark.createDataFrame(second, schema), cfg, "scores")
    path = Path(cfg.lakehouse) / cfg.dataset / "scores"
    rows = DeltaTable(str(path)).to_pyarrow_table().to_pylist()
    assert sorted(r["event_id"] for r in rows) == ["a", "b", "c"]


def test_merge_insert_bounded_by_event_time_still_skips_a_replay(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg()
    schema = "event_id string, detector string, event_ts timestamp, event_date date"
    t0 = dt.datetime(2024, 1, 4, 10)
    rows = [(f"e{i}", "ensemble", t0 + dt.timedelta(minutes=i), t0.date()) for i in range(4)]
    first, later = rows[:2], rows[2:]
    span = (rows[0][2], rows[1][2])
    merge_insert(spark.createDataFrame(first, schema), cfg, "scores", event_ts_range=span)
    merge_insert(spark.createDataFrame(later, schema), cfg, "scores",
                 event_ts_range=(rows[2][2], rows[3][2]))  # fmt: skip
    # The replay of the first batch, and a re-sent copy of e3 in a batch of its own.
    merge_insert(spark.createDataFrame(first, schema), cfg, "scores", event_ts_range=span)
    merge_insert(spark.createDataFrame(rows[3:], schema), cfg, "scores",
                 event_ts_range=(rows[3][2], rows[3][2]))  # fmt: skip
    path = Path(cfg.lakehouse) / cfg.dataset / "scores"
    got = sorted(r["event_id"] for r in DeltaTable(str(path)).to_pyarrow_table().to_pylist())
    assert got == ["e0", "e1", "e2", "e3"]


def test_merge_upsert_bounded_by_the_batch_earliest_window_reads_only_recent_files(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg()
    schema = "entity_id string, window_start timestamp, events long"
    keys = ("entity_id", "window_start")
    old, recent, new = (dt.datetime(2024, 1, 4, h) for h in (1, 5, 6))
    # Two appends, two files: one of old windows only, one of recent windows only.
    merge_upsert(spark.createDataFrame([("a", old, 3), ("b", old, 1)], schema), cfg,
                 "entity_windows", keys)  # fmt: skip
    path = Path(io.table_path(cfg, "entity_windows"))
    spark.createDataFrame([("a", recent, 2)], schema).write.format("delta").mode("append").save(
        str(path)
    )
    old_file = [a["path"] for a in _adds(path / "_delta_log" / f"{0:020d}.json")]
    # Take the old windows' file away from under the table: a MERGE that reads it fails.
    hidden = {f: (path / f).read_bytes() for f in old_file}
    for f in hidden:
        (path / f).unlink()
    batch = spark.createDataFrame([("a", recent, 5), ("c", new, 1)], schema)
    with pytest.raises(Exception, match=r"(?i)file.*(not exist|not found)"):
        merge_upsert(batch, cfg, "entity_windows", keys)
    merge_upsert(batch, cfg, "entity_windows", keys, since=("window_start", recent))
    for f, data in hidden.items():
        (path / f).write_bytes(data)
    got = sorted((r["entity_id"], r["window_start"].replace(tzinfo=None), r["events"])
                 for r in DeltaTable(str(path)).to_pyarrow_table().to_pylist())  # fmt: skip
    # Old windows untouched, the recent one overwritten, the new one inserted.
    assert got == [("a", old, 3), ("a", recent, 5), ("b", old, 1), ("c", new, 1)]
    with pytest.raises(ValueError, match="not one of the keys"):
        merge_upsert(batch, cfg, "entity_windows", keys, since=("events", 0))


def _adds(log: Path) -> list[dict[str, object]]:
    return [json.loads(ln)["add"] for ln in log.read_text().splitlines() if '"add"' in ln]


def test_summarize_reports_the_batch_earliest_event_and_dates(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg()
    # Two days of events (one every 6 hours), so the batch spans a date boundary.
    events = make_events("S", 7, step_seconds=6 * 3600)
    batch = _batch(spark, [json.dumps(e) for e in events])
    summary = summarize(accepted_rows(classify_batch(batch, TRANSACTIONS, cfg, NOW), TRANSACTIONS))
    stamps = [dt.datetime.fromisoformat(str(e["event_ts"]).rstrip("Z")) for e in events]
    assert summary.earliest == min(stamps)
    assert summary.latest == max(stamps)
    assert summary.dates == sorted({t.date() for t in stamps})


def test_history_keeps_earlier_rows_of_the_batch_accounts_or_merchants_in_the_look_back(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg()
    at = STREAM_START + dt.timedelta(hours=8)
    template = make_events("T", 1)[0]

    def ev(tid: str, account: str, merchant: str, when: dt.datetime) -> dict[str, object]:
        return {**template, "transaction_id": tid, "account_id": account,
                "merchant_id": merchant, "event_ts": when.isoformat() + "Z"}  # fmt: skip

    def accepted(events: list[dict[str, object]]):  # type: ignore[no-untyped-def]
        batch = _batch(spark, [json.dumps(e) for e in events])
        return accepted_rows(classify_batch(batch, TRANSACTIONS, cfg, NOW), TRANSACTIONS)

    hour = dt.timedelta(hours=1)
    too_old = at - dt.timedelta(days=lookback_days(cfg) + 1)
    past = [
        ev("same-account", "acct-A", "m-other", at - hour),
        ev("same-merchant", "acct-other", "m-M", at - 2 * hour),
        ev("both", "acct-A", "m-M", at - 3 * hour),
        ev("neither", "acct-other", "m-other", at - hour),
        ev("before-look-back", "acct-A", "m-M", too_old),
    ]
    accepted(past[:3]).write.format("delta").partitionBy(io.DATE_COL).save(
        io.table_path(cfg, "validated")
    )
    merge_insert(accepted(past[3:]), cfg, STREAM_EVENTS)
    events = accepted([ev("now-1", "acct-A", "m-X", at), ev("now-2", "acct-Y", "m-M", at)])
    got = history(spark, cfg, TRANSACTIONS, events, summarize(events))
    assert got is not None
    assert sorted(r["transaction_id"] for r in got.collect()) == [
        "both",
        "same-account",
        "same-merchant",
    ]


def test_merge_all_writes_each_table_once_and_a_replay_adds_nothing(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg()
    day = dt.date(2024, 1, 4)
    scores = spark.createDataFrame(
        [("a", "ensemble", 1.0, day), ("b", "ensemble", 2.0, day)],
        "event_id string, detector string, severity double, event_date date",
    )
    alerts = spark.createDataFrame(
        [("b", 2.0, day)], "event_id string, severity double, event_date date"
    )
    writes = [Write(scores, "scores", [day]), Write(alerts, "alerts", [day])]
    merge_all(writes, cfg)
    merge_all(writes, cfg)  # the replayed batch
    root = Path(cfg.lakehouse) / cfg.dataset
    got = {
        t: sorted(r["event_id"] for r in DeltaTable(str(root / t)).to_pyarrow_table().to_pylist())
        for t in ("scores", "alerts")
    }
    assert got == {"scores": ["a", "b"], "alerts": ["b"]}
    # A failing MERGE fails the batch (so Spark replays it), even when the others commit.
    wrong = spark.createDataFrame([("c", day)], "wrong_key string, event_date date")
    with pytest.raises(AnalysisException):
        merge_all([Write(wrong, "alerts", [day]), Write(scores, "scores", [day])], cfg)


def test_micro_batch_features_equal_the_batch_featurize_of_the_same_rows(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    """The stream featurizes only its batch, over a look-back read from ``validated``
    and its own ``stream_events``; the batch job featurizes every row of the day at
    once. Same definitions, so the same values for the batch's events."""
    cfg = make_cfg()

    def accepted(events: list[dict[str, object]]):  # type: ignore[no-untyped-def]
        batch = _batch(spark, [json.dumps(e) for e in events])
        return accepted_rows(classify_batch(batch, TRANSACTIONS, cfg, NOW), TRANSACTIONS)

    # Look-back: the day before and the same morning (rows the batch job also emits).
    history = make_events("H", 90, start=STREAM_START - dt.timedelta(days=1), seed=3,
                          step_seconds=1200)  # fmt: skip
    first = make_events("B", 15, start=STREAM_START + dt.timedelta(hours=8), seed=4)
    second = make_events("C", 15, start=STREAM_START + dt.timedelta(hours=9), seed=5)
    accepted(history).write.format("delta").partitionBy(io.DATE_COL).save(
        io.table_path(cfg, "validated")
    )
    streamed = features_for(spark, cfg, TRANSACTIONS, accepted(first), None).collect()
    # The first batch becomes look-back (stream_events) for the second.
    merge_insert(accepted(first), cfg, STREAM_EVENTS)
    streamed += features_for(spark, cfg, TRANSACTIONS, accepted(second), None).collect()

    everything = accepted(history + first + second)
    expected = {
        r["event_id"]: r
        for r in build_features(everything, cfg, [STREAM_START.date()]).collect()
        if r["event_id"][0] in "BC"
    }
    assert sorted(r["event_id"] for r in streamed) == sorted(expected)
    for row in streamed:
        want = expected[row["event_id"]].asDict()
        for name, value in row.asDict().items():
            if isinstance(value, float):
                assert value == pytest.approx(want[name], rel=1e-9, abs=1e-9), (
                    row["event_id"],
                    name,
                )
            else:
                assert value == want[name], (row["event_id"], name)


def test_webhook_retries_with_exponential_backoff(webhook: Webhook) -> None:
    webhook.script = [503, 500, 429]
    sleeps: list[float] = []
    out = delivery.post_json(webhook.url, '{"a": 1}', "E1", 4, 0.5, 5.0, sleep=sleeps.append)
    assert out.ok and out.attempts == 4
    assert sleeps == [0.5, 1.0, 2.0]
    assert webhook.keys == ["E1"] * 4


def test_webhook_gives_up_after_retries_and_on_client_errors(webhook: Webhook) -> None:
    webhook.script = [500] * 10
    out = delivery.post_json(webhook.url, "{}", "E2", 2, 0.0, 5.0)
    assert not out.ok and out.attempts == 3 and out.error == "HTTP 500"
    webhook.script = [400]
    out = delivery.post_json(webhook.url, "{}", "E3", 5, 0.0, 5.0)
    assert not out.ok and out.attempts == 1


def test_dead_letters_then_redelivered_when_the_endpoint_is_back(
    spark: SparkSession, make_cfg: Callable[..., Config], webhook: Webhook
) -> None:
    down = "http://127.0.0.1:9/unreachable"  # discard port: connection refused
    cfg_down = make_cfg(
        "transactions", f"stream.webhook_url={down}", "stream.webhook_retries=2",
        "stream.webhook_backoff_seconds=0.01",
    )  # fmt: skip
    counts = delivery.deliver(spark, cfg_down, [("E1", '{"event_id": "E1"}'), ("E2", "{}")])
    assert counts["dead_lettered"] == 2
    path = str(Path(cfg_down.lakehouse) / cfg_down.dataset / "dead_letters")
    letters = {r["event_id"]: r for r in DeltaTable(path).to_pyarrow_table().to_pylist()}
    assert {k: (r["status"], r["attempts"]) for k, r in letters.items()} == {
        "E1": ("pending", 3),
        "E2": ("pending", 3),
    }
    cfg_up = make_cfg("transactions", f"stream.webhook_url={webhook.url}")
    counts = delivery.deliver(spark, cfg_up, [("E3", "{}")])
    assert counts == {"delivered": 1, "dead_lettered": 0, "redelivered": 2}
    assert sorted(webhook.keys) == ["E1", "E2", "E3"]
    letters = {r["event_id"]: r["status"] for r in DeltaTable(path).to_pyarrow_table().to_pylist()}
    assert letters == {"E1": "delivered", "E2": "delivered"}


def _race(
    tmp_path: Path, write: Callable[[Column], None], other: Callable[[], None]
) -> BaseException | None:
    """Run ``write`` in a thread and hold it after it took its snapshot of the table
    (``write`` puts the gate column in its source's filter, evaluated inside its Spark
    job) while ``other`` commits to the same table; then let it finish. Returns what
    ``write`` raised, or None. ``write``'s source must be one partition: every task
    held at the gate holds a core, and ``other`` needs the other one."""
    from pyspark.sql import functions as F

    started, release = tmp_path / "started", tmp_path / "release"
    started.unlink(missing_ok=True)
    release.unlink(missing_ok=True)

    @F.udf("boolean")
    def gate(_: str) -> bool:
        if not release.exists():
            started.touch()
            deadline = time.time() + 120
            while not release.exists() and time.time() < deadline:
                time.sleep(0.05)
        return True

    failure: list[BaseException] = []

    def run() -> None:
        try:
            write(gate("event_id"))
        except BaseException as exc:  # handed to the test thread
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 120
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert started.exists(), "the write never reached its source"
    other()
    release.touch()
    thread.join(timeout=180)
    assert not thread.is_alive()
    return failure[0] if failure else None


def test_a_merge_that_loses_a_commit_conflict_to_compaction_is_run_again(
    spark: SparkSession,
    make_cfg: Callable[..., Config],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The nightly OPTIMIZE of jobs/maintain.py commits while a stream's MERGE is in
    flight: without the retry the batch fails, with it the rows land exactly once."""
    from lakehound import maintenance

    cfg = make_cfg()
    day = dt.date(2024, 1, 4)
    path = io.table_path(cfg, "scores")

    def small_files(prefix: str) -> None:
        for i in range(3):
            row = [(f"{prefix}{i}", "ensemble", 1.0, day)]
            merge_insert(spark.createDataFrame(row, SCORES), cfg, "scores", dates=[day])

    def merge_while_compacting(event_id: str) -> BaseException | None:
        batch = spark.createDataFrame([(event_id, "ensemble", 2.0, day)], SCORES)

        def compact() -> None:
            assert maintenance.compact(spark, path, [day]).files_removed >= 3

        return _race(
            tmp_path,
            lambda gate: merge_insert(batch.where(gate), cfg, "scores", dates=[day]),
            compact,
        )

    small_files("a")
    monkeypatch.setattr("lakehound.streaming.sinks.CONFLICT_ATTEMPTS", 1)
    lost = merge_while_compacting("lost")
    assert isinstance(lost, io.conflicts()), lost

    small_files("b")
    monkeypatch.setattr("lakehound.streaming.sinks.CONFLICT_ATTEMPTS", 3)
    caplog.set_level("WARNING", logger="lakehound.io")
    assert merge_while_compacting("kept") is None
    assert "MERGE into scores lost a commit conflict" in caplog.text
    rows = DeltaTable(path).to_pyarrow_table().to_pylist()
    assert sorted(r["event_id"] for r in rows) == ["a0", "a1", "a2", "b0", "b1", "b2", "kept"]
    ops = [h["operation"] for h in DeltaTable(path).history()]  # newest first
    assert ops[:2] == ["MERGE", "OPTIMIZE"]


def test_a_date_replacement_that_loses_a_commit_conflict_to_the_stream_is_run_again(
    spark: SparkSession,
    make_cfg: Callable[..., Config],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A batch re-run of a date (replaceWhere) while the live stream MERGEs an event of
    that date into the same table: without the retry the batch job fails, with it the
    re-run replaces the date as if it had started after the stream's commit."""
    cfg = make_cfg()
    day, other_day = dt.date(2024, 1, 4), dt.date(2024, 1, 5)
    path = io.table_path(cfg, "scores")
    rerun = spark.createDataFrame(
        [("r0", "ensemble", 1.0, day), ("r1", "ensemble", 1.0, day)], SCORES
    )
    io.replace_dates(
        spark.createDataFrame([("old", "ensemble", 1.0, day), ("keep", "ensemble", 1.0, other_day)], SCORES),
        cfg, "scores", [day, other_day],
    )  # fmt: skip

    def stream_commit(event_id: str) -> Callable[[], None]:
        row = spark.createDataFrame([(event_id, "ensemble", 3.0, day)], SCORES)
        return lambda: merge_insert(row, cfg, "scores", dates=[day])

    def replace(gate: Column) -> None:
        # One partition: one task held at the gate, the other core free for the stream.
        io.replace_dates(rerun.coalesce(1).where(gate), cfg, "scores", [day])

    monkeypatch.setattr(io, "REPLACE_ATTEMPTS", 1)
    lost = _race(tmp_path, replace, stream_commit("s1"))
    assert isinstance(lost, io.conflicts()), lost
    ids = sorted(r["event_id"] for r in DeltaTable(path).to_pyarrow_table().to_pylist())
    assert ids == ["keep", "old", "s1"]  # the failed replacement changed nothing

    monkeypatch.setattr(io, "REPLACE_ATTEMPTS", 3)
    caplog.set_level("WARNING", logger="lakehound.io")
    assert _race(tmp_path, replace, stream_commit("s2")) is None
    assert "replaceWhere into scores lost a commit conflict" in caplog.text
    ids = sorted(r["event_id"] for r in DeltaTable(path).to_pyarrow_table().to_pylist())
    # The date holds the re-run's rows only (the README's caveat: a batch re-run of a
    # date replaces its streamed rows too); the other date is untouched.
    assert ids == ["keep", "r0", "r1"]
    ops = [h["operation"] for h in DeltaTable(path).history()]  # newest first
    assert ops[:2] == ["WRITE", "MERGE"]
