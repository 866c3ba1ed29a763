"""Contracts of the tables LakeHound writes: validation, features, scores, alerts.

Every output table is a Delta table partitioned by ``event_date`` (see
``lakehound.io``). The validation tables are written by ``jobs/validate.py``; the
features/scores/alerts contracts fix the columns the later stages agree on.
"""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from schemas.base import Contract, FieldSpec

EVENT_DATE = FieldSpec(
    "event_date", DateType(), "Partition: UTC date of the event (or the run date).", False
)
RUN_ID = FieldSpec("run_id", StringType(), "Id of the job run that wrote the row.", False)


def validated_contract(source: Contract) -> Contract:
    """``validated``: the input contract's columns, typed, plus the date partition and run id."""
    return Contract(
        name=f"{source.name}_validated",
        version=source.version,
        description=f"Rows of {source.name} that passed every row-level rule, one per key.",
        key=source.key,
        event_time=source.event_time,
        fields=(*source.fields, EVENT_DATE, RUN_ID),
        quirks=source.quirks,
    )


QUARANTINE = Contract(
    name="quarantine",
    version="1.0.0",
    description="Rows that failed at least one row-level rule, kept with their raw text.",
    fields=(
        FieldSpec(
            "raw_record",
            StringType(),
            "The record as text: the unparsed line for malformed records, otherwise the "
            "parsed tokens re-rendered in the input format (CSV line, JSON object).",
        ),
        FieldSpec(
            "reasons",
            ArrayType(StringType(), False),
            "Every rule the row failed, e.g. missing:amount, not_in_set:currency, duplicate.",
            False,
        ),
        RUN_ID,
        FieldSpec("source_file", StringType(), "Input file the record came from."),
        FieldSpec(
            "event_date",
            DateType(),
            "Partition: the run date of a dated run; otherwise the file's landing partition "
            "date, else the row's own date, else the run's start date.",
            False,
        ),
        FieldSpec(
            "quarantined_at", TimestampType(), "When the run quarantined the row (UTC).", False
        ),
    ),
)

EXPECTATION_RESULT = StructType(
    [
        StructField(
            "expectation",
            StringType(),
            False,
            {"comment": "GX expectation type or LakeHound check."},
        ),
        StructField(
            "column", StringType(), True, {"comment": "Column checked, null for table-level."}
        ),
        StructField("success", BooleanType(), False, {"comment": "Whether the expectation held."}),
        StructField(
            "blocking", BooleanType(), False, {"comment": "Whether a failure fails the run."}
        ),
        StructField("observed", StringType(), True, {"comment": "Observed value, as JSON."}),
        StructField("expected", StringType(), True, {"comment": "Expectation arguments, as JSON."}),
    ]
)

VALIDATION_RUNS = Contract(
    name="validation_runs",
    version="1.0.0",
    description="One row per validation run and event date: counts, outcome, expectations.",
    key=("run_id", "event_date"),
    fields=(
        RUN_ID,
        FieldSpec("dataset", StringType(), "Dataset validated (config `dataset`).", False),
        EVENT_DATE,
        FieldSpec("contract", StringType(), "Input contract name.", False),
        FieldSpec("contract_version", StringType(), "Input contract version.", False),
        FieldSpec("success", BooleanType(), "False when a blocking expectation failed.", False),
        FieldSpec("rows_in", LongType(), "Records read for this date.", False),
        FieldSpec("validated", LongType(), "Rows written to `validated` for this date.", False),
        FieldSpec("quarantined", LongType(), "Rows written to `quarantine` for this date.", False),
        FieldSpec("invalid_fraction", DoubleType(), "quarantined / rows_in (0 when empty)."),
        FieldSpec(
            "reason_counts",
            MapType(StringType(), LongType(), False),
            "Quarantined rows per reason for this date (a row counts once per reason).",
        ),
        FieldSpec(
            "expectations",
            ArrayType(EXPECTATION_RESULT, False),
            "Per-expectation outcome and observed value. GX runs once per run, on all of the "
            "run's validated rows, so an undated run repeats the same list on every date.",
        ),
        FieldSpec(
            "blocking_failures", ArrayType(StringType(), False), "Why the run failed, if it did."
        ),
        FieldSpec("data_docs", StringType(), "Path of the rendered GX Data Docs index, if any."),
        FieldSpec("started_at", TimestampType(), "Run start (UTC).", False),
        FieldSpec("finished_at", TimestampType(), "Run end (UTC).", False),
    ),
)

EXPLANATION = ArrayType(
    StructType(
        [
            StructField("feature", StringType(), False),
            StructField("value", DoubleType(), True),
            # Severity points (see udfs/explain.py): the parts of a row add up to
            # its severity less the detector's base severity.
            StructField("contribution", DoubleType(), True),
            # Attribution method: tree_shap, kernel_shap, max_z_shapley, pca_shapley
            # (robust_z for the SynapseML engine).
            StructField("method", StringType(), True),
        ]
    ),
    False,
)

_EVENT_ID = FieldSpec(
    "event_id", StringType(), "Key of the scored event (e.g. transaction_id).", False
)
_ENTITY_ID = FieldSpec(
    "entity_id", StringType(), "Entity the event belongs to (account, host, sensor)."
)
_EVENT_TS = FieldSpec("event_ts", TimestampType(), "When the event happened (UTC).", False)
_MODEL_VERSION = FieldSpec(
    "model_version", StringType(), "Version of the model that scored.", False
)

FEATURES = Contract(
    name="features",
    version="1.0.0",
    description=(
        "One row per event: keys, then one double per feature. The feature columns are the "
        "columns declared in the feature registry (lakehound.features), not listed here."
    ),
    key=("event_id",),
    event_time="event_ts",
    fields=(_EVENT_ID, _ENTITY_ID, _EVENT_TS, EVENT_DATE),
)

SCORES = Contract(
    name="scores",
    version="1.0.0",
    description="One row per event and detector.",
    key=("event_id", "detector"),
    event_time="event_ts",
    fields=(
        _EVENT_ID,
        FieldSpec("detector", StringType(), "Detector name from the scoring config.", False),
        FieldSpec("raw_score", DoubleType(), "Detector output, higher = more anomalous."),
        FieldSpec(
            "severity", DoubleType(), "Score mapped to 0..100.", min_value=0.0, max_value=100.0
        ),
        FieldSpec("is_anomaly", BooleanType(), "raw_score above the detector threshold."),
        FieldSpec("threshold", DoubleType(), "Threshold in raw_score units."),
        _MODEL_VERSION,
        FieldSpec(
            "explanation",
            EXPLANATION,
            "Top features with value, contribution (severity points) and attribution method.",
        ),
        FieldSpec("scored_at", TimestampType(), "When the row was scored (UTC).", False),
        _EVENT_TS,
        EVENT_DATE,
        RUN_ID,
    ),
)

ALERTS = Contract(
    name="alerts",
    version="1.0.0",
    description="One row per event whose ensemble severity crossed the alert level.",
    key=("event_id",),
    event_time="event_ts",
    fields=(
        _EVENT_ID,
        _ENTITY_ID,
        _EVENT_TS,
        EVENT_DATE,
        FieldSpec(
            "severity", DoubleType(), "Ensemble severity 0..100.", min_value=0.0, max_value=100.0
        ),
        FieldSpec("detectors", ArrayType(StringType(), False), "Detectors that flagged the event."),
        FieldSpec(
            "contributions",
            MapType(StringType(), DoubleType(), True),
            "Per-detector contribution to the ensemble severity.",
        ),
        FieldSpec(
            "explanation",
            EXPLANATION,
            "Top features with value, contribution (severity points) and attribution method.",
        ),
        _MODEL_VERSION,
        RUN_ID,
        FieldSpec("alerted_at", TimestampType(), "When the alert was raised (UTC).", False),
    ),
)
