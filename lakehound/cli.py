"""The shared command line of every job: arguments, config, session, exit codes.

Each job module is ``main(argv) -> int`` calling :func:`run_job` with its own
``run(spark, cfg, ctx)``; this module turns LakeHound errors into their exit codes
and one clear line on stderr, so the job itself stays extract -> transform -> load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyspark.sql import SparkSession

from lakehound.config import Config, load_config
from lakehound.errors import ConfigError, LakeHoundError

log = logging.getLogger("lakehound")


@dataclass
class RunContext:
    """What one job invocation knows besides the config."""

    job: str
    date: dt.date | None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    timings: dict[str, float] = field(default_factory=dict)
    # Stages being timed now: jobs.pipeline wraps each job in a stage of the job's own
    # name, and the job may time the same name inside; only the outer one counts.
    _open: set[str] = field(default_factory=set, repr=False)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage and log its start and end, for progress and the run summary."""
        if name in self._open:
            yield
            return
        self._open.add(name)
        log.info("[%s] %s ...", self.job, name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self._open.discard(name)
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start
            log.info("[%s] %s done in %.1fs", self.job, name, self.timings[name])


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--date must be YYYY-MM-DD, got {text!r}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}")


def parse_args(prog: str, description: str | None, argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog=prog, description=description)
    parser.add_argument(
        "--config", required=True, help="dataset config, e.g. conf/transactions.yaml"
    )
    parser.add_argument("--date", type=_date, help="process one event date (YYYY-MM-DD)")
    parser.add_argument("--env", help="environment overlay in conf/env/ (local, cluster, ...)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set lakehouse=/tmp/lh (repeatable)",
    )
    return parser.parse_args(argv)


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # py4j logs every gateway call at INFO.
    logging.getLogger("py4j").setLevel(logging.WARNING)


def run_job(
    job: str,
    description: str | None,
    run: Callable[[SparkSession, Config, RunContext], object],
    argv: list[str] | None = None,
) -> int:
    """Parse, load config, build the session, run, and map errors to exit codes."""
    from lakehound.io import check_lakehouse_writable
    from lakehound.session import build_session

    setup_logging()
    try:
        args = parse_args(f"jobs.{job}", description, argv)
        cfg = load_config(args.config, args.overrides, args.env)
        ctx = RunContext(job=job, date=args.date)
        # Before the session starts: an unwritable lakehouse is one line, not minutes
        # of work ending in the first write's traceback.
        check_lakehouse_writable(cfg)
        spark = build_session(cfg.spark, app_name=f"lakehound-{job}-{cfg.dataset}")
        run(spark, cfg, ctx)
    except LakeHoundError as exc:
        print(f"lakehound {job}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
