"""SQL server access control (issue 26, defect 12), without starting a server:
the bind refusal happens before anything is launched, and the server's conf that
disables direct file queries is checked on a real session. The beeline checks
against a running server are in tests/ops/test_sql_server.py (integration)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession

from lakehound import sqlserver
from lakehound.errors import ConfigError


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "db.example.org"])
def test_remote_bind_without_auth_is_refused(host: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"--host {host}: .* without credentials"):
        sqlserver.start(host, 10000, state=tmp_path / "state")
    assert not (tmp_path / "state").exists(), "refused before anything was launched"


def test_cli_refusal_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert sqlserver.main(["start", "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lakehound sqlserver: ConfigError: --host 0.0.0.0")


def test_loopback_or_authenticated_binds_pass_the_check() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        sqlserver.check_access(host, {})
    sqlserver.check_access("0.0.0.0", {"hive.server2.authentication": "LDAP"})
    with pytest.raises(ConfigError):
        sqlserver.check_access("0.0.0.0", {"hive.server2.authentication": "nosasl"})


def test_server_conf_disables_file_queries(spark: SparkSession, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve me\n")
    query = f"SELECT * FROM text.`file://{secret}`"
    assert spark.sql(query).collect()[0][0] == "do not serve me"  # Spark's default
    ((key, value),) = sqlserver.SERVER_CONF.items()
    spark.conf.set(key, value)
    try:
        with pytest.raises(AnalysisException):
            spark.sql(query).collect()
    finally:
        spark.conf.unset(key)
