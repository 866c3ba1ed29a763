"""Every analyst query in sql/ through JDBC (beeline) against a real Thrift server.

The server is ``lakehound.sqlserver`` (pyspark's HiveThriftServer2 with Delta and a
Derby metastore in a temp dir) on a free loopback port, over a lakehouse the real
jobs wrote. Expected results come from the Delta tables read with the ``deltalake``
package and plain Python (or by hand, for the feedback verdicts), never from Spark.
"""

from __future__ import annotations

import csv
import io as stdio
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lakehound import sqlserver
from lakehound.errors import SetupError
from lakehound.ports import free_port

from .conftest import BAD_ROWS, ROOT, OpsLakehouse, table

pytestmark = pytest.mark.integration
SQL = ROOT / "sql"


@dataclass(frozen=True)
class Server:
    url: str
    port: int
    state: Path


@pytest.fixture(scope="module")
def thrift(
    ops_lakehouse: OpsLakehouse, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A running server with the test lakehouse registered; always stopped afterwards."""
    state = tmp_path_factory.mktemp("thrift")
    port = free_port()
    try:
        sqlserver.start("127.0.0.1", port, state=state)
        sets = [a for o in ops_lakehouse.overrides for a in ("--set", o)]
        # Registered twice: re-registering must be idempotent (and keep the data).
        for _ in range(2):
            assert sqlserver.main(["register", "--port", str(port), *sets]) == 0
        yield Server(sqlserver.jdbc_url("127.0.0.1", port), port, state)
    finally:
        sqlserver.stop(state)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "server still listening after stop()"


@pytest.fixture
def server(thrift: Server) -> str:
    return thrift.url


def _rows(out: str) -> list[dict[str, str]]:
    return list(csv.DictReader(stdio.StringIO(out), delimiter="\t", quoting=csv.QUOTE_NONE))


def query(url: str, name: str, **hivevars: str) -> list[dict[str, str]]:
    return _rows(sqlserver.beeline(url, file=SQL / name, hivevars=hivevars))


def _num(text: str) -> float | None:
    return None if text in ("", "NULL") else float(text)


def test_every_query_file_is_tested() -> None:
    tested = {
        "top_anomalies.sql",
        "feature_importance.sql",
        "alert_volume.sql",
        "precision_over_time.sql",
        "quarantine_reasons.sql",
        "scores_before_rerun.sql",
    }
    assert {p.name for p in SQL.glob("*.sql")} == tested


def test_bound_to_loopback_only(server: str) -> None:
    port = int(server.rsplit(":", 1)[1].split("/")[0])
    # The JVM listens on an IPv6 socket where it can: 127.0.0.1 then shows in tcp6 as
    # the IPv4-mapped ::ffff:127.0.0.1. A wildcard bind would be 00000000 / all zeros.
    listening = [
        line.split()[1]
        for table in ("/proc/net/tcp", "/proc/net/tcp6")
        if Path(table).exists()
        for line in Path(table).read_text().splitlines()[1:]
        if line.split()[3] == "0A" and int(line.split()[1].rsplit(":", 1)[1], 16) == port
    ]
    loopback = {f"0100007F:{port:04X}", f"0000000000000000FFFF00000100007F:{port:04X}"}
    assert len(listening) == 1 and listening[0] in loopback, listening


def test_top_anomalies(server: str, ops_lakehouse: OpsLakehouse) -> None:
    alerts = table(ops_lakehouse.cfg, "alerts")
    latest = max(a["event_date"] for a in alerts)  # type: ignore[type-var]
    top = sorted(
        (a for a in alerts if a["event_date"] == latest),
        key=lambda a: (-a["severity"], a["event_id"]),  # type: ignore[operator]
    )[:20]
    got = query(server, "top_anomalies.sql")
    assert [r["event_id"] for r in got] == [a["event_id"] for a in top]
    for r, a in zip(got, top, strict=True):
        assert float(r["severity"]) == pytest.approx(a["severity"], abs=0.051)
        expl = a["explanation"][:3]  # type: ignore[index]
        want = [f"{e['feature']}={e['value']:,.3f}" for e in expl]
        assert r["top_features"] == "[" + ",".join(f'"{w}"' for w in want) + "]"


def test_feature_importance(server: str, ops_lakehouse: OpsLakehouse) -> None:
    scores: list[dict[str, Any]] = table(ops_lakehouse.cfg, "scores")
    latest = max(r["event_date"] for r in scores)
    flagged = [
        r for r in scores if r["event_date"] == latest and r["is_anomaly"] and r["explanation"]
    ]
    alerts = Counter(r["detector"] for r in flagged)
    total: dict[tuple[str, str], float] = {}
    for r in flagged:
        for e in r["explanation"]:
            key = (r["detector"], e["feature"])
            total[key] = total.get(key, 0.0) + abs(e["contribution"])
    want: list[tuple[str, str, str, str, float]] = []
    for det in sorted(alerts, key=lambda d: (d != "ensemble", d)):
        feats = sorted(
            ((f, t) for (d, f), t in total.items() if d == det), key=lambda ft: (-ft[1], ft[0])
        )[:10]
        want += [
            (det, str(alerts[det]), str(i), f, t / alerts[det])
            for i, (f, t) in enumerate(feats, start=1)
        ]
    got = query(server, "feature_importance.sql")
    assert [(r["detector"], r["alerts"], r["rank"], r["feature"]) for r in got] == [
        w[:4] for w in want
    ]
    for r, w in zip(got, want, strict=True):
        assert float(r["mean_abs_part"]) == pytest.approx(w[4], abs=0.0051)
        if r["rank"] == "1":  # the bar is scaled to the detector's strongest feature
            assert r["bar"] == "#" * 20


def test_alert_volume(server: str, ops_lakehouse: OpsLakehouse) -> None:
    want = Counter(
        (str(r["event_date"]), r["detector"])
        for r in table(ops_lakehouse.cfg, "scores")
        if r["is_anomaly"]
    )
    got = {
        (r["event_date"], r["detector"]): int(r["flagged"])
        for r in query(server, "alert_volume.sql")
    }
    assert want and got == dict(want)
    assert "ensemble" in {d for _, d in got}


def test_precision_over_time(server: str, ops_lakehouse: OpsLakehouse) -> None:
    # By hand from the recorded verdicts: on the first date alice's true positive was
    # overturned by bob and her other verdict is a false positive; on the second both
    # are true positives.
    ids = [v[0] for v in ops_lakehouse.verdicts]
    alert_date = {a["event_id"]: str(a["event_date"]) for a in table(ops_lakehouse.cfg, "alerts")}
    first, second = alert_date[ids[0]], alert_date[ids[2]]
    got = [
        (r["event_date"], int(r["reviewed"]), int(r["confirmed"]), float(r["precision"]))
        for r in query(server, "precision_over_time.sql")
    ]
    assert got == [(first, 2, 0, 0.0), (second, 2, 2, 1.0)]


def test_quarantine_reasons(server: str, ops_lakehouse: OpsLakehouse) -> None:
    want = Counter(
        (str(r["event_date"]), reason)
        for r in table(ops_lakehouse.cfg, "quarantine")
        for reason in r["reasons"]  # type: ignore[attr-defined]
    )
    got = [
        (r["event_date"], r["reason"], int(r["rows_quarantined"]))
        for r in query(server, "quarantine_reasons.sql")
    ]
    assert {(d, r): n for d, r, n in got} == dict(want)
    # Every injected bad row is there, with the reason it deserves.
    assert sum(want.values()) >= len(BAD_ROWS)
    assert {d for d, _ in want} == {d for d, _ in BAD_ROWS}
    assert ("2024-01-05", "missing:account_id") in want
    assert want[("2024-01-05", "invalid_type:amount")] == 1
    # Ordered by date, then most frequent reason.
    assert got == sorted(got, key=lambda x: (x[0], -x[2], x[1]))


def test_scores_before_rerun_time_travel(server: str, ops_lakehouse: OpsLakehouse) -> None:
    lh = ops_lakehouse
    day = lh.last_date

    def ensemble(version: int | None) -> dict[str, float]:
        return {
            str(r["event_id"]): float(r["severity"])  # type: ignore[arg-type]
            for r in table(lh.cfg, "scores", version)
            if r["detector"] == "ensemble" and r["event_date"] == day
        }

    before, now = ensemble(lh.prev_version), ensemble(None)
    # The fixture halved last night's severities, so the versions really differ.
    assert before.keys() == now.keys() and before != now
    want = sorted(now, key=lambda e: (-abs(now[e] - before[e]), e))[:50]
    # The README's way to find the version: DESCRIBE HISTORY through the same server.
    history = _rows(sqlserver.beeline(server, "DESCRIBE HISTORY transactions.scores"))
    assert max(int(r["version"]) for r in history) - 1 == lh.prev_version
    got = query(server, "scores_before_rerun.sql", prev_version=str(lh.prev_version))
    assert [r["event_id"] for r in got] == want
    for r in got:
        assert _num(r["severity_before"]) == pytest.approx(before[r["event_id"]])
        assert _num(r["severity_now"]) == pytest.approx(now[r["event_id"]])


def test_catalog_survives_restart(thrift: Server, ops_lakehouse: OpsLakehouse) -> None:
    """The metastore is persistent: after a restart the tables answer without re-registering."""
    sqlserver.stop(thrift.state)
    sqlserver.start("127.0.0.1", thrift.port, state=thrift.state)
    got = _rows(sqlserver.beeline(thrift.url, "SELECT count(*) AS n FROM transactions.alerts"))
    assert int(got[0]["n"]) == len(table(ops_lakehouse.cfg, "alerts"))


def test_direct_file_queries_are_refused(server: str, tmp_path: Path) -> None:
    """Issue 26, defect 12: any client could read any file of the server's user."""
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve me\n")
    with pytest.raises(SetupError, match=r"TABLE_OR_VIEW_NOT_FOUND|cannot be found"):
        sqlserver.beeline(server, f"SELECT * FROM text.`file://{secret}`;")
