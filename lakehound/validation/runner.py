"""One validation run: read -> classify -> expectations -> policy -> write -> reconcile.

The order matters. Expectations and the blocking policy are decided *before* any
data table is written, so a blocked run leaves ``validated`` and ``quarantine``
exactly as they were (only its ``validation_runs`` row, with ``success = false``,
records the failure). Reconciliation compares the rows read with the rows Delta
reports it wrote, so a lost row is caught at the storage layer, not in a count of
the same DataFrame that was split.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lakehound import io
from lakehound.cli import RunContext
from lakehound.config import Config
from lakehound.errors import ConfigError, ContractViolation, ReconciliationError
from lakehound.validation import gx_engine
from lakehound.validation.gx_engine import ExpectationOutcome
from lakehound.validation.reader import RawInput, SchemaDrift, read_raw
from lakehound.validation.rules import (
    RAW_RECORD,
    REASONS,
    SOURCE_FILE,
    classify,
    mark_seen,
    quarantine_rows,
)
from schemas.base import Contract
from schemas.expectations import SuiteOptions, build_suite
from schemas.outputs import VALIDATION_RUNS
from schemas.registry import get_contract

log = logging.getLogger("lakehound.validation")

VALIDATED = "validated"
QUARANTINE_TABLE = "quarantine"
RUNS = "validation_runs"


@dataclass(frozen=True)
class DateCounts:
    rows_in: int
    validated: int
    quarantined: int
    reason_counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ValidationSummary:
    """What a validation run did; returned to the pipeline, mirrored in ``validation_runs``."""

    run_id: str
    dataset: str
    contract: str
    contract_version: str
    dates: tuple[dt.date, ...]
    rows_in: int
    validated: int
    quarantined: int
    reason_counts: dict[str, int]
    per_date: dict[dt.date, DateCounts]
    expectations: tuple[ExpectationOutcome, ...]
    success: bool
    blocking_failures: tuple[str, ...]
    data_docs: str | None


def resolve_contract(cfg: Config) -> Contract:
    name = cfg.validation.contract or cfg.dataset
    try:
        return get_contract(name)
    except KeyError as exc:
        raise ConfigError(f"validation.contract: {exc.args[0]}") from None


def drift_outcome(drift: Sequence[SchemaDrift], cfg: Config) -> ExpectationOutcome:
    """Missing columns always drift; unknown ones only where ``allow_new_columns`` is off."""
    bad = [d for d in drift if d.missing or (d.extra and not cfg.validation.allow_new_columns)]
    return ExpectationOutcome(
        expectation="schema_drift",
        column=None,
        success=not bad,
        blocking=gx_engine.is_blocking("schema_drift", None, cfg.validation.blocking),
        observed=json.dumps([d.describe() for d in drift]),
        expected=json.dumps({"allow_new_columns": cfg.validation.allow_new_columns}),
    )


def invalid_fraction_outcome(rows_in: int, quarantined: int, cfg: Config) -> ExpectationOutcome:
    fraction = quarantined / rows_in if rows_in else 0.0
    limit = cfg.validation.max_invalid_fraction
    return ExpectationOutcome(
        expectation="invalid_fraction",
        column=None,
        success=fraction <= limit,
        blocking=gx_engine.is_blocking("invalid_fraction", None, cfg.validation.blocking),
        observed=json.dumps(round(fraction, 6)),
        expected=json.dumps({"max_value": limit}),
    )


def volume_bounds(
    spark: SparkSession, cfg: Config, dates: Sequence[dt.date]
) -> tuple[int | None, int | None]:
    """Row-count bounds: the config's, tightened by the usual volume of other dates."""
    low: int | None = cfg.validation.min_rows or None
    high = cfg.validation.max_rows
    tolerance = cfg.validation.volume_tolerance
    if tolerance is None or not io.table_exists(spark, cfg, RUNS):
        return low, high
    history = (
        io.read_table(spark, cfg, RUNS)
        .where(F.col("success") & ~F.col("event_date").isin(list(dates)))
        .orderBy(F.col("event_date").desc(), F.col("finished_at").desc())
        .dropDuplicates(["event_date"])
        .orderBy(F.col("event_date").desc())
        .limit(cfg.validation.volume_history_runs)
        .select("validated")
        .collect()
    )
    usual = [int(r["validated"]) for r in history if r["validated"]]
    if not usual:
        return low, high
    median = statistics.median(usual) * max(1, len(dates))
    hist_low, hist_high = int(median / tolerance), int(median * tolerance) + 1
    low = max(low or 0, hist_low) or None
    high = hist_high if high is None else min(high, hist_high)
    return low, high


def recent_keys(
    spark: SparkSession, cfg: Config, contract: Contract, date: dt.date | None
) -> DataFrame | None:
    """Keys the ``validated`` table holds on the ``validation.dedup_days`` dates before
    a dated run's date; None when there is nothing to check against.

    Only earlier dates: the run replaces its own date, and the copy of a key that was
    validated first is the one kept (a run over all dates keeps the earliest event).
    """
    days = cfg.validation.dedup_days
    if date is None or not days or not contract.key or not io.table_exists(spark, cfg, VALIDATED):
        return None
    window = [date - dt.timedelta(days=d) for d in range(1, days + 1)]
    return (
        io.read_table(spark, cfg, VALIDATED)
        .where(F.col(io.DATE_COL).isin(window))
        .select(*contract.key)
    )


def _counts(classified: DataFrame) -> dict[dt.date, DateCounts]:
    """Rows in, quarantined and per-reason counts per date, in one pass.

    Grouped by the whole reasons array: a feed has a handful of distinct
    combinations (valid rows all have the empty one), and the per-reason counts
    are summed from them here instead of by a second, exploding job.
    """
    by_date: dict[dt.date, dict[str, int]] = {}
    rows_in: dict[dt.date, int] = {}
    quarantined: dict[dt.date, int] = {}
    for r in classified.groupBy(io.DATE_COL, REASONS).count().collect():
        date, reasons, n = r[io.DATE_COL], r[REASONS], int(r["count"])
        rows_in[date] = rows_in.get(date, 0) + n
        if reasons:
            quarantined[date] = quarantined.get(date, 0) + n
            counts = by_date.setdefault(date, {})
            for reason in reasons:
                counts[reason] = counts.get(reason, 0) + n
    return {
        date: DateCounts(
            rows_in=n,
            validated=n - quarantined.get(date, 0),
            quarantined=quarantined.get(date, 0),
            reason_counts=by_date.get(date, {}),
        )
        for date, n in rows_in.items()
    }


def validated_frame(classified: DataFrame, contract: Contract, run_id: str) -> DataFrame:
    return classified.where(F.size(REASONS) == 0).select(
        *contract.column_names, io.DATE_COL, F.lit(run_id).alias("run_id")
    )


def _table_version(spark: SparkSession, cfg: Config, table: str) -> int:
    """The table's latest Delta version; -1 before its first commit."""
    from delta.tables import DeltaTable

    path = io.table_path(cfg, table)
    if not DeltaTable.isDeltaTable(spark, path):
        return -1
    return int(DeltaTable.forPath(spark, path).history(1).collect()[0]["version"])


def _written_rows(spark: SparkSession, cfg: Config, table: str, before: int) -> int:
    """Rows the commit after version ``before`` of ``table`` wrote (Delta's metrics).

    Delta commits nothing for an empty replaceWhere that removes no file (re-running
    a date without quarantined rows): no new version means no row was written.
    """
    from delta.tables import DeltaTable

    last = DeltaTable.forPath(spark, io.table_path(cfg, table)).history(1).collect()[0]
    if int(last["version"]) == before:
        return 0
    metrics = last["operationMetrics"] or {}
    return int(metrics.get("numOutputRows", "0"))


def runs_frame(
    spark: SparkSession,
    summary: ValidationSummary,
    started_at: dt.datetime,
) -> DataFrame:
    finished = dt.datetime.now(dt.UTC)
    expectations = [
        (o.expectation, o.column, o.success, o.blocking, o.observed, o.expected)
        for o in summary.expectations
    ]
    rows = []
    for date in summary.dates:
        c = summary.per_date.get(date, DateCounts(0, 0, 0))
        rows.append(
            (
                summary.run_id,
                summary.dataset,
                date,
                summary.contract,
                summary.contract_version,
                summary.success,
                c.rows_in,
                c.validated,
                c.quarantined,
                c.quarantined / c.rows_in if c.rows_in else 0.0,
                c.reason_counts,
                expectations,
                list(summary.blocking_failures),
                summary.data_docs,
                started_at,
                finished,
            )
        )
    schema: StructType = VALIDATION_RUNS.schema()
    return spark.createDataFrame(rows, schema)


def _fail_message(failures: Sequence[ExpectationOutcome]) -> str:
    return "; ".join(f"blocking expectation {o.describe()}" for o in failures)


def validate(spark: SparkSession, cfg: Config, ctx: RunContext) -> ValidationSummary:
    """Validate the run's input; write validated, quarantine and validation_runs."""
    contract = resolve_contract(cfg)
    now = ctx.started_at
    fallback = now.date()
    with ctx.stage("read raw input"):
        raw: RawInput = read_raw(spark, cfg.input, contract, [ctx.date] if ctx.date else None)
    drift = drift_outcome(raw.drift, cfg)
    base = dict(
        run_id=ctx.run_id,
        dataset=cfg.dataset,
        contract=contract.name,
        contract_version=contract.version,
    )
    dates: tuple[dt.date, ...]
    if not drift.success and drift.blocking:
        # The columns cannot be trusted, so no row is classified: record and stop.
        dates = (ctx.date or fallback,)
        summary = ValidationSummary(
            **base, dates=dates, rows_in=0, validated=0, quarantined=0, reason_counts={},
            per_date={}, expectations=(drift,), success=False,
            blocking_failures=(drift.describe(),), data_docs=None,
        )  # fmt: skip
        io.replace_dates(runs_frame(spark, summary, now), cfg, RUNS, dates)
        raise ContractViolation(_fail_message([drift]))

    level = (
        StorageLevel.DISK_ONLY
        if cfg.validation.persist == "disk_only"
        else StorageLevel.MEMORY_AND_DISK
    )
    classified = classify(
        raw.df, contract, cfg.validation, run_date=ctx.date, fallback_date=fallback, now=now
    )
    earlier = recent_keys(spark, cfg, contract, ctx.date)
    if earlier is not None:
        classified = mark_seen(classified, earlier, contract.key)
    # Only quarantined rows keep their raw text and file: the validated rows are
    # stored typed, and dropping both halves what the cache holds.
    invalid = F.size(REASONS) > 0
    classified = classified.withColumns(
        {
            RAW_RECORD: F.when(invalid, F.col(RAW_RECORD)),
            SOURCE_FILE: F.when(invalid, F.col(SOURCE_FILE)),
        }
    ).persist(level)
    try:
        with ctx.stage("classify rows"):
            per_date = _counts(classified)
        rows_in = sum(c.rows_in for c in per_date.values())
        quarantined = sum(c.quarantined for c in per_date.values())
        validated = rows_in - quarantined
        reason_counts: dict[str, int] = {}
        for c in per_date.values():
            for reason, n in c.reason_counts.items():
                reason_counts[reason] = reason_counts.get(reason, 0) + n
        dates = (ctx.date,) if ctx.date else tuple(sorted(per_date) or [fallback])
        outcomes = [drift, invalid_fraction_outcome(rows_in, quarantined, cfg)]
        docs_index = None
        with ctx.stage("expectations (GX)"):
            low, high = volume_bounds(spark, cfg, dates)
            suite = build_suite(
                contract,
                SuiteOptions(
                    min_rows=low, max_rows=high, distribution=cfg.validation.distribution_checks
                ),
            )
            docs_dir = data_docs_dir(cfg)
            gx_outcomes, docs_index = gx_engine.run_suite(
                validated_frame(classified, contract, ctx.run_id).drop("run_id", io.DATE_COL),
                suite,
                run_name=f"{cfg.dataset}_{ctx.run_id}",
                blocking=cfg.validation.blocking,
                docs_dir=docs_dir,
            )
            outcomes += gx_outcomes
        failures = [o for o in outcomes if o.blocking and not o.success]
        for o in outcomes:
            if not o.success and not o.blocking:
                log.warning("expectation failed (not blocking): %s", o.describe())
        summary = ValidationSummary(
            **base, dates=dates, rows_in=rows_in, validated=validated, quarantined=quarantined,
            reason_counts=reason_counts, per_date=per_date, expectations=tuple(outcomes),
            success=not failures, blocking_failures=tuple(o.describe() for o in failures),
            data_docs=docs_index,
        )  # fmt: skip
        if failures:
            io.replace_dates(runs_frame(spark, summary, now), cfg, RUNS, dates)
            raise ContractViolation(_fail_message(failures))

        with ctx.stage("write validated"):
            before = _table_version(spark, cfg, VALIDATED)
            io.replace_dates(
                validated_frame(classified, contract, ctx.run_id), cfg, VALIDATED, dates
            )
            written_valid = _written_rows(spark, cfg, VALIDATED, before)
        with ctx.stage("write quarantine"):
            before = _table_version(spark, cfg, QUARANTINE_TABLE)
            io.replace_dates(
                quarantine_rows(classified, ctx.run_id, now), cfg, QUARANTINE_TABLE, dates
            )
            written_quarantine = _written_rows(spark, cfg, QUARANTINE_TABLE, before)
    finally:
        classified.unpersist()

    if written_valid + written_quarantine != rows_in or written_valid != validated:
        failure = (
            f"reconciliation: rows_in={rows_in} but validated wrote {written_valid} and "
            f"quarantine wrote {written_quarantine}"
        )
        summary = ValidationSummary(
            **{**summary.__dict__, "success": False, "blocking_failures": (failure,)}
        )
        io.replace_dates(runs_frame(spark, summary, now), cfg, RUNS, dates)
        raise ReconciliationError(failure)
    io.replace_dates(runs_frame(spark, summary, now), cfg, RUNS, dates)
    log.info(
        "validated %s: %d in, %d validated, %d quarantined %s",
        cfg.dataset, rows_in, validated, quarantined, reason_counts,
    )  # fmt: skip
    return summary


def data_docs_dir(cfg: Config) -> str | None:
    """``<lakehouse>/<dataset>/_data_docs`` for a local lakehouse; None when disabled."""
    if not cfg.validation.data_docs or "://" in cfg.lakehouse:
        # GX's local site builder writes files; remote lakehouses get no docs (logged).
        if cfg.validation.data_docs:
            log.info("data docs skipped: lakehouse %s is not a local path", cfg.lakehouse)
        return None
    return io.table_path(cfg, "_data_docs")
