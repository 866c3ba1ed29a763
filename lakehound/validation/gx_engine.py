"""Run a contract's expectation suite with Great Expectations' Spark engine.

GX sees the Spark DataFrame itself (a ``spark`` data source with a whole-dataframe
batch), so metrics are computed by Spark and nothing is collected to pandas. The
caller caches the frame first: GX issues one Spark job per metric batch. An
ephemeral context is used per run (no shared GX state on disk to lock or corrupt);
Data Docs are rendered into a local site directory by the checkpoint's
``UpdateDataDocsAction``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import great_expectations as gx
from great_expectations.core.result_format import ResultFormat
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)
from pyspark.sql import DataFrame

log = logging.getLogger("lakehound.validation")

SITE = "lakehound_local"

# Counts and percentages of unexpected values, but no sample of them: a sample is one
# more Spark job per expectation, and when nothing is unexpected (the usual case: the
# row rules already quarantined the offenders) its LIMIT scans the whole frame. The
# offending rows themselves are in ``quarantine``.
RESULT_FORMAT: dict[str, Any] = {
    "result_format": ResultFormat.BASIC,
    "partial_unexpected_count": 0,
}


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result, in the shape stored in ``validation_runs``."""

    expectation: str
    column: str | None
    success: bool
    blocking: bool
    observed: str | None
    expected: str | None

    @property
    def id(self) -> str:
        return f"{self.expectation}:{self.column}" if self.column else self.expectation

    def describe(self) -> str:
        return f"{self.id} observed {self.observed} (expected {self.expected})"


def is_blocking(expectation: str, column: str | None, blocking: Collection[str]) -> bool:
    return expectation in blocking or (column is not None and f"{expectation}:{column}" in blocking)


def _plain(value: Any) -> Any:
    """numpy scalars and tuples -> plain JSON-able Python values, recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and type(value).__module__ == "numpy":
        return value.item()
    return value


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def _observed(result: dict[str, Any]) -> Any:
    if "observed_value" in result:
        return result["observed_value"]
    keys = ("element_count", "unexpected_count", "unexpected_percent")
    shown = {k: result[k] for k in keys if k in result}
    return shown or None


def _exception(info: Any) -> str | None:
    """The exception message of a result; GX nests it per metric when a metric failed."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _expected(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in ("column", "batch_id") and v is not None}


def run_suite(
    df: DataFrame,
    suite: gx.ExpectationSuite,
    *,
    run_name: str,
    blocking: Collection[str],
    docs_dir: str | None,
) -> tuple[list[ExpectationOutcome], str | None]:
    """Validate ``df`` against ``suite``; return the outcomes and the Data Docs index path."""
    context = gx.get_context(mode="ephemeral")
    # Progress bars write to stderr once per metric: noise in job logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir:
        Path(docs_dir).mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            site_name=SITE,
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(Path(docs_dir).resolve()),
                },
            },
        )
    source = context.data_sources.add_spark(name="lakehound")
    asset = source.add_dataframe_asset(name=run_name)
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
        batch_parameters={"dataframe": df}
    )
    suite = context.suites.add(suite)
    result = batch.validate(suite, result_format=RESULT_FORMAT)
    # Not a Checkpoint: GX 1.24's quantile expectation leaves numpy bools in its
    # result (``success`` among them), which the results store cannot serialise, so
    # the result is cleaned first and then stored and rendered explicitly.
    for r in result.results:
        r.success = bool(r.success)
        r.result = _plain(dict(r.result))
    if docs_dir:
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite.name),
            run_id=RunIdentifier(run_name=run_name),
            batch_identifier=batch.id,
        )
        context.validation_results_store.set(key, result)
        context.build_data_docs(site_names=[SITE])
    run_results = {"batch": result}
    outcomes: list[ExpectationOutcome] = []
    for suite_result in run_results.values():
        for r in suite_result.results:
            cfg = r.expectation_config
            assert cfg is not None
            column = cfg.kwargs.get("column")
            observed: Any = _observed(dict(r.result))
            error = _exception(r.exception_info)
            if error:
                observed = {"exception": error}
            outcomes.append(
                ExpectationOutcome(
                    expectation=cfg.type,
                    column=column,
                    success=bool(r.success),
                    blocking=is_blocking(cfg.type, column, blocking),
                    observed=_json(observed),
                    expected=_json(_expected(dict(cfg.kwargs))),
                )
            )
    index = None
    if docs_dir:
        candidate = Path(docs_dir) / "index.html"
        index = str(candidate.resolve()) if candidate.exists() else None
    return outcomes, index
