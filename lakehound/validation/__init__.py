"""Validation: contracts enforced on raw input, quarantine with reasons, nothing lost.

Modules: ``reader`` (raw input as strings, malformed records and schema drift
captured), ``adapters`` (line parsers, derived columns), ``rules`` (row-level rules
and duplicates), ``gx_engine`` (Great Expectations on Spark, Data Docs) and
``runner`` (one run: policy, writes, reconciliation, ``validation_runs``).
"""

from lakehound.validation.runner import DateCounts, ValidationSummary, validate

__all__ = ["DateCounts", "ValidationSummary", "validate"]
