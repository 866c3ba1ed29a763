"""Serve the dataset's production models over HTTP: raw events in, severities out.

    python -m jobs.serve --config conf/transactions.yaml [--host 127.0.0.1] [--port 8080]
        [--set serve.flush_seconds=10 ...]

SageMaker inference container contract: ``GET /ping``, ``POST /invocations``
(application/json, application/jsonlines, text/csv), OpenAPI at ``/docs``. Binds
127.0.0.1 unless told otherwise; any other address needs a bearer token
(``serve.token`` or ``LAKEHOUND_SERVE_TOKEN``) or the job refuses to start (exit 2).
See README "Endpoint" and :mod:`lakehound.serving`.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator

from lakehound.cli import setup_logging
from lakehound.config import Config, load_config
from lakehound.errors import ConfigError, LakeHoundError

log = logging.getLogger("lakehound.serve")
TOKEN_ENV = "LAKEHOUND_SERVE_TOKEN"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="jobs.serve", description=__doc__)
    p.add_argument("--config", required=True, help="dataset config, e.g. conf/transactions.yaml")
    p.add_argument("--host", help="address to bind (default serve.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default serve.port, 8080)")
    p.add_argument("--env", help="environment overlay in conf/env/")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key (repeatable)",
    )  # fmt: skip
    return p.parse_args(argv)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(cfg: Config) -> str:
    """The bearer token; refuses a non-loopback bind without one."""
    token = os.environ.get(TOKEN_ENV) or cfg.serve.token
    if not token and not is_loopback(cfg.serve.host):
        raise ConfigError(
            f"serve.host {cfg.serve.host} is not a loopback address: set serve.token or "
            f"{TOKEN_ENV} (requests must then carry 'Authorization: Bearer <token>')"
        )
    return token


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises SIGTERM / SIGINT once it has stopped, which kills the
            # process before the write-ahead log reaches Delta: stop, then return.
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self.handle_exit)
            yield

    return Server


def main(argv: list[str] | None = None) -> int:
    # Naive timestamps are UTC everywhere (Spark's session zone; PySpark converts
    # naive datetimes with the process zone).
    os.environ["TZ"] = "UTC"
    time.tzset()
    setup_logging()
    try:
        args = parse_args(argv)
        extra = [f"serve.host={args.host}"] if args.host else []
        extra += [f"serve.port={args.port}"] if args.port else []
        cfg = load_config(args.config, [*args.overrides, *extra], args.env)
        token = resolve_token(cfg)
        import uvicorn

        from lakehound.serving.app import create_app
        from lakehound.serving.service import Service
        from lakehound.session import build_session

        spark = build_session(cfg.spark, app_name=f"lakehound-serve-{cfg.dataset}")
        service = Service(spark, cfg)
        service.start()
        config = uvicorn.Config(
            create_app(service, token),
            host=cfg.serve.host,
            port=cfg.serve.port,
            log_config=None,
            access_log=False,
            timeout_keep_alive=5,
        )
        try:
            _server_class()(config).run()
        finally:
            service.close()
    except LakeHoundError as exc:
        print(f"lakehound serve: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
