"""Log sessions (lakehound.features.sessions) on HDFS-format lines, and raw lines
reaching the session detectors through the template miner (lakehound.quality.logs)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import SparkSession

from lakehound.features import logs as L
from lakehound.features import sessions as S
from lakehound.quality import logs as Q

LINES = [
    "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating",
    "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 0 for block blk_-6952295868487656571 terminating",
    "081109 203807 222 INFO dfs.DataNode$PacketResponder: Received block blk_38865049064139660 of size 67108864 from /10.251.42.84",
    "081109 204005 35 INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.251.73.220:50010 is added to blk_7128370237687728475 size 67108864",
    "081109 204106 329 WARN dfs.DataNode$DataXceiver: 10.251.43.210:50010:Got exception while serving blk_38865049064139660 to /10.251.43.210",
    "081109 204132 26 INFO dfs.FSNamesystem: BLOCK* ask 10.250.14.224:50010 to replicate blk_-6952295868487656571 to datanode(s) 10.251.73.220:50010",
    "081109 204133 26 INFO dfs.FSNamesystem: BLOCK* NameSystem.delete: blk_38865049064139660 is added to invalidSet of 10.251.43.210:50010 and blk_7128370237687728475",
    "081109 204200 19 INFO dfs.DataBlockScanner: Verification succeeded for a file with no block",
    "not an hdfs line",
]
TERMINATING = "PacketResponder <*> for block blk_<*> terminating"
RECEIVED = "Received block blk_<*> of size <*> from <*>"
STORED = "BLOCK* NameSystem.addStoredBlock: blockMap updated: <*> is added to blk_<*> size <*>"
EXCEPTION = "<*>:Got exception while serving blk_<*> to <*>"
REPLICATE = "BLOCK* ask <*> to replicate blk_<*> to datanode(s) <*>"
DELETE = "BLOCK* NameSystem.delete: blk_<*> is added to invalidSet of <*> and blk_<*>"


@pytest.mark.slow
def test_hdfs_lines_become_block_sessions(spark: SparkSession) -> None:
    lines = spark.createDataFrame(list(enumerate(LINES)), "line_no long, value string")
    parsed = S.parse_hdfs(lines)
    assert [r["parse_ok"] for r in parsed.orderBy("line_no").collect()] == [True] * 8 + [False]
    keyed = S.with_session_keys(L.assign_templates(parsed))
    # The unparseable line and the line naming no block belong to no session.
    assert S.sessionless_lines(keyed) == 2
    sessions = S.session_features(keyed, S.SessionSpec(rare_min_count=2))
    names = {
        r["template_id"]: r["template"]
        for r in keyed.select("template_id", "template").distinct().collect()
    }
    got = {r["session_id"]: r for r in sessions.collect()}
    assert sorted(got) == [
        "blk_-6952295868487656571",
        "blk_38865049064139660",
        "blk_7128370237687728475",
    ]
    a = got["blk_38865049064139660"]
    assert [names[t] for t in a["template_seq"]] == [TERMINATING, RECEIVED, EXCEPTION, DELETE]
    assert a["n_events"] == 4.0 and a["n_templates"] == 4.0
    assert a["window_start"] == dt.datetime(2008, 11, 9, 20, 36, 15)
    assert a["event_ts"] == dt.datetime(2008, 11, 9, 20, 41, 33)
    assert a["duration_s"] == 318.0
    assert a["n_errors"] == 0.0  # WARN is not an error level
    # The delete line names two blocks: it counts in both sessions.
    b = got["blk_7128370237687728475"]
    assert [names[t] for t in b["template_seq"]] == [STORED, DELETE]
    # Line 2 is the second "terminating" line: its template had one earlier line,
    # so it is not new but still rare (< 2 earlier lines); every other line is new.
    c = got["blk_-6952295868487656571"]
    assert [names[t] for t in c["template_seq"]] == [TERMINATING, REPLICATE]
    assert (c["new_template_share"], c["rare_template_share"]) == (0.5, 1.0)
    assert a["new_template_share"] == 1.0
    # The delete line is new once (its first session in line order), not twice.
    assert b["new_template_share"] == 1.0
    assert dict(b["template_counts"]) == dict.fromkeys(b["template_seq"], 1)


def test_session_spec_validates() -> None:
    with pytest.raises(ValueError, match="key_pattern"):
        S.SessionSpec(key_pattern="(blk_")
    with pytest.raises(ValueError, match="at most one group"):
        S.SessionSpec(key_pattern=r"(blk)_(\d+)")
    assert S.SessionSpec(key_pattern=r"sshd\[\d+\]").group == 0


def _block(blk: str, t: int, replicas: int, kind: str) -> list[tuple[int, str]]:
    """HDFS lines of one block write; ``kind`` plants an anomaly."""
    ips = [f"10.251.{10 + i}.{20 + i}" for i in range(replicas)]
    out = [
        (t, f"INFO dfs.FSNamesystem: BLOCK* NameSystem.allocateBlock: /user/root/part-{t} {blk}"),
    ]
    for ip in ips:
        out.append(
            (
                t + 1,
                f"INFO dfs.DataNode$DataXceiver: Receiving block {blk} src: /{ip}:50010 dest: /{ip}:50010",
            )
        )
    if kind == "exception":
        out.append(
            (
                t + 2,
                f"WARN dfs.DataNode$DataXceiver: writeBlock {blk} received exception java.io.IOException: Could not read from stream",
            )
        )
    for i, ip in enumerate(ips):
        if kind == "no_terminate" and i == 0:
            continue
        out.append(
            (
                t + 3,
                f"INFO dfs.DataNode$PacketResponder: PacketResponder {i} for block {blk} terminating",
            )
        )
        out.append(
            (
                t + 3,
                f"INFO dfs.DataNode$PacketResponder: Received block {blk} of size 67108864 from /{ip}",
            )
        )
    for ip in ips:
        out.append(
            (
                t + 4,
                f"INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: {ip}:50010 is added to {blk} size 67108864",
            )
        )
    return out  # fmt: skip


@pytest.mark.slow
def test_raw_hdfs_lines_reach_the_session_detectors(spark: SparkSession, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    kinds = ["normal"] * 56 + ["exception", "no_terminate", "exception", "no_terminate"]
    lines, labels = [], ["BlockId,Label"]
    for i, kind in enumerate(kinds):
        blk = f"blk_{-1 if i % 2 else 1}{1000 + i}"
        t = 20 * 3600 + 10 * i  # seconds of the day, from 20:00:00
        for ts, msg in _block(blk, t, int(rng.integers(2, 4)), kind):
            hms = f"{ts // 3600:02d}{ts // 60 % 60:02d}{ts % 60:02d}"
            lines.append(f"081109 {hms} {100 + i} {msg}")
        labels.append(f"{blk},{'Normal' if kind == 'normal' else 'Anomaly'}")
    log, lab = tmp_path / "HDFS.log", tmp_path / "anomaly_label.csv"
    log.write_text("\n".join([*lines, "garbage"]) + "\n")
    lab.write_text("\n".join(labels) + "\n")
    result = Q.hdfs_raw(
        spark, log, lab, train_fraction=0.5, detectors=["invariants_mining", "pca_spe_counts"]
    )
    assert result["lines_unparsed"] == 1
    assert result["train_sessions"] == 30 and result["test_sessions"] == 30
    assert result["test_anomalies"] == 4
    for name in ("invariants_mining", "pca_spe_counts"):
        r = result["detectors"][name]
        assert (r["tp"], r["fp"], r["fn"]) == (4, 0, 0), (name, r)
    # A label file missing a block is refused, naming it.
    lab.write_text("BlockId,Label\nblk_11000,Normal\n")
    with pytest.raises(Q.DataError, match="no label for block"):
        Q.hdfs_raw(spark, log, lab, detectors=["invariants_mining"])


def test_window_sessions_key_entity_and_window_start(spark: SparkSession) -> None:
    rows = [
        (dt.datetime(2005, 6, 3, 15, 42, 50), "KERNEL", "a"),
        (dt.datetime(2005, 6, 3, 15, 44, 59), "KERNEL", "b"),
        (dt.datetime(2005, 6, 3, 15, 45, 0), "KERNEL", "c"),
        (dt.datetime(2005, 6, 3, 15, 43, 0), None, "d"),
        (None, "APP", "e"),
    ]
    df = spark.createDataFrame(rows, "event_ts timestamp, component string, message string")
    got = {r["message"]: r["session_id"] for r in S.with_window_sessions(df, "5 minutes").collect()}
    assert got == {
        "a": "KERNEL@2005-06-03T15:40:00",
        "b": "KERNEL@2005-06-03T15:40:00",
        "c": "KERNEL@2005-06-03T15:45:00",
        "d": "unknown@2005-06-03T15:40:00",
        "e": None,
    }
