"""Start / stop Spark's Thrift JDBC server over the LakeHound Delta tables.

    python -m lakehound.sqlserver start --config conf/transactions.yaml [--port 10000]
    python -m lakehound.sqlserver stop

The server is pyspark's own HiveThriftServer2 (spark-hive-thriftserver ships in the
pip package), launched with spark-submit so it picks up the project's
spark-defaults.conf (Delta extension and catalog, locked jars). Its catalog is a
persistent Derby metastore under ``.cache/metastore`` and it binds to 127.0.0.1 unless
``--host`` says otherwise. After start every Delta table under
``<lakehouse>/<dataset>/`` is registered as ``<dataset>.<table>`` (idempotent).

Access: without authentication anyone who can reach the port can read and change
every table, so a non-loopback ``--host`` is refused unless Hive authentication is
configured (``--hiveconf hive.server2.authentication=LDAP`` and its settings, or
KERBEROS / CUSTOM / PAM). Direct file queries (``SELECT * FROM text.`/etc/...` ``)
are disabled: clients see the registered tables only.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from lakehound.config import Config, load_config
from lakehound.errors import ConfigError, LakeHoundError, SetupError
from lakehound.jars import jar_paths

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".cache" / "metastore"
PID_FILE = STATE / "thriftserver.pid"
BIN = Path(sys.executable).parent


def _spark_env() -> dict[str, str]:
    """Environment for pyspark's launcher scripts: without SPARK_HOME they look for
    pyspark with whatever ``python3`` is first on PATH, which need not be this venv's."""
    import pyspark

    return {
        **os.environ,
        "SPARK_HOME": os.environ.get("SPARK_HOME", str(Path(pyspark.__file__).parent)),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
    }


def jdbc_url(host: str = "127.0.0.1", port: int = 10000) -> str:
    return f"jdbc:hive2://{host}:{port}/default"


def _wait_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SetupError(
                f"Thrift server exited with {proc.returncode} before listening on "
                f"{host}:{port}; see {log}"
            )
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(1.0)
    raise SetupError(
        f"Thrift server not listening on {host}:{port} after {timeout:.0f}s; see {log}"
    )


# Server-side Spark conf. runSQLOnFiles off: `SELECT ... FROM text.`<path>`` would let
# any SQL client read any file the server's user can (and parquet./json. likewise).
SERVER_CONF = {"spark.sql.runSQLOnFiles": "false"}
NO_AUTH = ("NONE", "NOSASL")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: only loopback by the name localhost
        return False


def check_access(host: str, hiveconf: dict[str, str]) -> None:
    """Refuse to listen beyond loopback without authentication configured."""
    auth = hiveconf.get("hive.server2.authentication", "NONE").upper()
    if not is_loopback(host) and auth in NO_AUTH:
        raise ConfigError(
            f"--host {host}: the SQL server would accept anyone who can reach the port "
            "without credentials; bind 127.0.0.1, or configure authentication "
            "(--hiveconf hive.server2.authentication=LDAP|KERBEROS|CUSTOM|PAM and its keys)"
        )


def start(
    host: str = "127.0.0.1",
    port: int = 10000,
    state: Path = STATE,
    timeout: float = 240,
    hiveconf: dict[str, str] | None = None,
) -> int:
    """Launch the server in the background; return its pid once it accepts connections."""
    hiveconf = dict(hiveconf or {})
    check_access(host, hiveconf)
    state.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(BIN / "spark-submit"),
        "--class",
        "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2",
        # On the driver class path, not only spark.jars: the Hive session state loads
        # the Delta catalog class before spark.jars reach the context class loader.
        "--driver-class-path",
        ":".join(jar_paths("spark")),
        "--master",
        "local[2]",
        "--conf",
        "spark.sql.shuffle.partitions=2",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        # The Thrift row serializer expects java.sql.Date/Timestamp, not java.time.
        "spark.sql.datetime.java8API.enabled=false",
        "--conf",
        # Delta answers min/max/count from the log's statistics and builds those
        # values as java.time objects, which then fail the cast above
        # (ClassCastException LocalDate -> java.sql.Date on `max(event_date)`).
        "spark.databricks.delta.optimizeMetadataQuery.enabled=false",
        "--conf",
        f"spark.sql.warehouse.dir={state / 'warehouse'}",
        "--conf",
        "spark.sql.catalogImplementation=hive",
        "--hiveconf",
        f"hive.server2.thrift.bind.host={host}",
        "--hiveconf",
        f"hive.server2.thrift.port={port}",
        "--hiveconf",
        f"javax.jdo.option.ConnectionURL=jdbc:derby:;databaseName={state / 'metastore_db'};create=true",
        *[a for k, v in SERVER_CONF.items() for a in ("--conf", f"{k}={v}")],
        *[a for k, v in hiveconf.items() for a in ("--hiveconf", f"{k}={v}")],
        "spark-internal",
    ]
    env = _spark_env()
    # Derby writes derby.log into the working directory: keep it under the state dir.
    with (state / "thriftserver.log").open("ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=state, env=env, start_new_session=True
        )
    (state / "thriftserver.pid").write_text(str(proc.pid))
    try:
        _wait_port(host, port, timeout, proc, state / "thriftserver.log")
    except SetupError:
        stop(state)
        raise
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        # Our own child (tests, `start` then `stop` in one process) is reaped here.
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(state: Path = STATE, timeout: float = 60) -> None:
    """Stop the server started from ``state`` and wait until it has exited."""
    pid_file = state / "thriftserver.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    # The server leads its own process group (start_new_session): signal the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink()


def registration_sql(cfg: Config) -> list[str]:
    """Statements (re-)registering every Delta table of the dataset by location.

    The metastore is persistent, so a table registered earlier may point at another
    lakehouse: drop and create. The tables are EXTERNAL (created with LOCATION), so
    DROP only forgets the name, never the data.
    """
    from lakehound import io

    base = Path(io.table_path(cfg, "x")).parent
    stmts = [f"CREATE DATABASE IF NOT EXISTS `{cfg.dataset}`"]
    for d in sorted(base.iterdir()) if base.exists() else []:
        if d.name.startswith("_") or not (d / "_delta_log").is_dir():
            continue
        name = f"`{cfg.dataset}`.`{d.name}`"
        stmts.append(f"DROP TABLE IF EXISTS {name}")
        stmts.append(f"CREATE TABLE {name} USING DELTA LOCATION '{d}'")
    return stmts


_PROMPT = re.compile(r"^(?:\d+: jdbc:\S+> ?)+")


def beeline(
    url: str,
    sql: str | None = None,
    file: Path | None = None,
    hivevars: dict[str, str] | None = None,
) -> str:
    """Run statements (``sql``) or a script (``file``) through pyspark's beeline; tsv2 out.

    ``hivevars`` fill the ``${name}`` placeholders of the analyst queries.
    """
    if (sql is None) == (file is None):
        raise TypeError("beeline needs exactly one of sql= and file=")
    cmd = [str(BIN / "beeline"), "-u", url, "--silent=true", "--outputformat=tsv2"]
    for k, v in (hivevars or {}).items():
        cmd += ["--hivevar", f"{k}={v}"]
    cmd += ["-e", sql] if sql is not None else ["-f", str(file)]
    out = subprocess.run(
        cmd,
        capture_output=True,
        env=_spark_env(),
        text=True,
        check=False,
    )
    # beeline -f exits 0 even when a statement fails; its errors start with "Error:".
    if out.returncode != 0 or "Error:" in out.stderr:
        # The server's "Error: ..." lines name the cause (error class, table, state);
        # the Java stack trace after them does not, so they lead the message and the
        # trace is cut rather than the cause.
        causes = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
        head = "\n".join(c[:1000] for c in causes[:5])
        raise SetupError(f"beeline failed ({out.returncode}): {head}\n{out.stderr[-1000:]}")
    # Without a terminal beeline still echoes its prompt (``0: jdbc:hive2://...> ``)
    # in front of a result's header line, even with --silent: strip it, and drop the
    # prompt-only lines a script's comments and blank statements leave.
    lines = (_PROMPT.sub("", line) for line in out.stdout.splitlines())
    return "".join(f"{line}\n" for line in lines if line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lakehound.sqlserver", description=__doc__)
    ap.add_argument("action", choices=["start", "stop", "register"])
    ap.add_argument("--config", default=str(ROOT / "conf" / "transactions.yaml"))
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=10000)
    ap.add_argument(
        "--hiveconf", action="append", default=[], metavar="KEY=VALUE",
        help="a HiveServer2 setting, e.g. hive.server2.authentication=LDAP (repeatable)",
    )  # fmt: skip
    a = ap.parse_args(argv)
    if a.action == "stop":
        stop()
        return 0
    try:
        if a.action == "start":
            hiveconf = dict(kv.split("=", 1) for kv in a.hiveconf if "=" in kv)
            pid = start(a.host, a.port, hiveconf=hiveconf)
            print("thrift server pid", pid, "at", jdbc_url(a.host, a.port))
        cfg = load_config(a.config, a.set)
        beeline(jdbc_url(a.host, a.port), ";\n".join(registration_sql(cfg)) + ";")
    except LakeHoundError as exc:
        print(f"lakehound sqlserver: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
