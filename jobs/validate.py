"""Validate a raw feed against its contract: validated + quarantine, nothing lost.

    spark-submit jobs/validate.py --config conf/transactions.yaml --date 2024-01-03
    python -m jobs.validate --config conf/transactions.yaml [--set lakehouse=/tmp/lh]

Reads ``input.path`` (one ``event_date=`` partition with ``--date``, every date
without) as strings with the contract's columns, applies the row rules, writes the
Delta tables ``<dataset>.validated`` / ``quarantine`` / ``validation_runs`` for
exactly the run's dates (a re-run replaces them) and renders GX Data Docs into
``<lakehouse>/<dataset>/_data_docs/``. Exit codes: 0 ok, 2 config error, 3 a
blocking expectation failed, 4 input missing, 6 counts do not reconcile.
"""

from __future__ import annotations

import sys

from pyspark.sql import SparkSession

from lakehound.cli import RunContext, run_job
from lakehound.config import Config
from lakehound.validation import ValidationSummary, validate


def run(spark: SparkSession, cfg: Config, ctx: RunContext) -> ValidationSummary:
    """The pipeline's entry point: validate ``ctx.date`` (or every date) of ``cfg.input``."""
    return validate(spark, cfg, ctx)


def main(argv: list[str] | None = None) -> int:
    return run_job("validate", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
