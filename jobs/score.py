"""Score features with the registered detectors; write ``scores`` and ``alerts``.

    spark-submit jobs/score.py --config conf/transactions.yaml --date 2024-01-08
    python -m jobs.score --config conf/transactions.yaml [--set scoring.model_version=v...]

Every detector scores every row in one pass (one iterator pandas UDF per detector,
model loaded once per worker). ``scores`` holds one row per (event, detector) plus
the ``ensemble`` row; ``alerts`` one row per event whose ensemble severity reaches
``scoring.alert_severity``. Both replace exactly the run's dates. The scoring
itself is :mod:`lakehound.scoring`; this job reads, scores and writes.
"""

from __future__ import annotations

import logging
import sys

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehound import io
from lakehound.cli import RunContext, run_job
from lakehound.config import Config
from lakehound.dates import run_dates

# The core lives in the library (lakehound.scoring); re-exported for callers of
# the names this module used to define.
from lakehound.scoring import Member, load_members, score_wide, to_alerts, to_scores

log = logging.getLogger("lakehound.score")

__all__ = ["Member", "load_members", "main", "run", "score_wide", "to_alerts", "to_scores"]


def run(spark: SparkSession, cfg: Config, ctx: RunContext) -> dict[str, int]:
    features = io.read_table(spark, cfg, "features")
    dates = run_dates(features, ctx.date, io.table_name(cfg, "features"))
    features = features.where(F.col(io.DATE_COL).isin(dates))
    if ctx.date is not None and not features.limit(1).count():
        from lakehound.errors import InputError

        # As validate does for a missing input partition: "scored 0 events" and exit 0
        # would let the DAG go on as if the date had been scored.
        raise InputError(
            f"no features for {ctx.date} in {io.table_name(cfg, 'features')} "
            f"({io.table_path(cfg, 'features')}); run jobs.featurize for that date first"
        )
    members = load_members(spark, cfg)
    with ctx.stage("score"):
        # Persisted so the UDFs run once for both outputs.
        wide = score_wide(features, members, cfg).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            io.replace_dates(to_scores(wide, members, cfg, ctx), cfg, "scores", dates)
            io.replace_dates(to_alerts(wide, members, cfg, ctx), cfg, "alerts", dates)
        finally:
            wide.unpersist()
    in_dates = F.col(io.DATE_COL).isin(dates)
    counts = {
        "scored": io.read_table(spark, cfg, "scores")
        .where(in_dates & (F.col("detector") == "ensemble"))
        .count(),
        "alerts": io.read_table(spark, cfg, "alerts").where(in_dates).count(),
    }
    log.info("scored %(scored)d events, %(alerts)d alerts", counts)
    return counts


def main(argv: list[str] | None = None) -> int:
    return run_job("score", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
