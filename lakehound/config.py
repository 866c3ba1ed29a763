"""Typed, layered, validated configuration.

Layers, later wins: ``conf/base.yaml`` -> the dataset file passed with ``--config``
-> ``conf/env/<environment>.yaml`` -> ``--set key=value`` overrides. The merged
dict is validated into frozen pydantic models; raw dicts never leave this module.
Any unknown key or bad value raises :class:`ConfigError` with one line naming the
dotted key, which jobs turn into exit code 2.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lakehound.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class _Model(BaseModel):
    # extra="forbid" is what turns a typo'd key into an error instead of a silent None.
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkSettings(_Model):
    master: str = "local[*]"
    app_name: str = "lakehound"
    shuffle_partitions: int = Field(4, ge=1)
    driver_memory: str = "4g"
    ui_enabled: bool = False
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "WARN"
    # in-memory: tables are registered per session; hive: a persistent local metastore.
    catalog: Literal["in-memory", "hive"] = "in-memory"
    warehouse_dir: str = "spark-warehouse"
    # Local runs take the JVM jars from the project cache written by `make setup`;
    # on a managed cluster the platform (or --packages) provides them.
    use_jar_cache: bool = True
    arrow_batch_size: int = Field(50_000, ge=100)
    conf: dict[str, str] = Field(default_factory=dict)


class InputSettings(_Model):
    path: str = ""
    format: Literal["csv", "json", "parquet", "delta", "text"] = "csv"
    options: dict[str, str] = Field(default_factory=dict)
    # Raw files laid out as <path>/event_date=YYYY-MM-DD/ so a run for one date
    # reads only that date.
    partitioned_by_date: bool = True


class LogGenerateSettings(_Model):
    """Generated application logs (dataset ``logs``); see lakehound.generators.logs.

    Only what is specific to logs: ``seed``, ``start_date`` and ``days`` are the
    ``generate`` section's, shared by every generator (which takes that section).
    """

    hosts: int = Field(12, ge=2)
    events_per_host_minute: float = Field(1.0, gt=0)
    error_bursts_per_day: int = Field(2, ge=0)
    burst_minutes: int = Field(10, ge=1)
    burst_events_per_minute: int = Field(20, ge=1)
    new_templates_per_day: int = Field(1, ge=0)
    new_template_events: int = Field(15, ge=1)
    silent_hosts_per_day: int = Field(1, ge=0)
    silent_minutes: int = Field(60, ge=1)


class SensorGenerateSettings(_Model):
    """Generated machine sensors (dataset ``sensors``); see lakehound.generators.sensors.

    As for logs, ``seed``, ``start_date`` and ``days`` come from the ``generate`` section.
    """

    machines: int = Field(6, ge=1)
    step_seconds: int = Field(60, ge=1, le=3600)
    failure_rate_per_machine_day: float = Field(0.15, ge=0, le=1)
    degradation_hours: float = Field(8.0, gt=0)
    failure_hours: float = Field(1.0, gt=0)
    downtime_hours: float = Field(2.0, ge=0)
    missing_rate: float = Field(0.002, ge=0, le=0.5)
    dropout_rate: float = Field(0.001, ge=0, le=0.5)

    @model_validator(mode="after")
    def _episode_fits_a_day(self) -> SensorGenerateSettings:
        # Each episode lives inside its day, so two episodes never overlap.
        if self.degradation_hours + self.downtime_hours >= 24:
            raise ValueError("degradation_hours + downtime_hours must be < 24")
        if self.failure_hours > self.degradation_hours:
            raise ValueError("failure_hours must be <= degradation_hours")
        return self


class GenerateSettings(_Model):
    seed: int = 42
    start_date: dt.date = dt.date(2024, 1, 1)
    days: int = Field(14, ge=1)
    accounts: int = Field(2_000, ge=10)
    merchants: int = Field(500, ge=10)
    tx_per_account_day: float = Field(2.0, gt=0)
    point_rate: float = Field(0.003, ge=0, le=0.2)
    contextual_rate: float = Field(0.003, ge=0, le=0.2)
    # Card-testing bursts per day, each a run of small transactions minutes apart.
    collective_bursts_per_day: int = Field(3, ge=0)
    burst_size: int = Field(12, ge=3)
    files_per_day: int = Field(1, ge=1)
    logs: LogGenerateSettings = LogGenerateSettings()
    sensors: SensorGenerateSettings = SensorGenerateSettings()


class ValidationSettings(_Model):
    # Name of the input contract in schemas.registry (e.g. transactions, fraud_sim).
    contract: str = ""
    # Blocking policy: above this fraction of invalid rows the run fails (exit 3).
    max_invalid_fraction: float = Field(0.2, ge=0, le=1)
    min_rows: int = Field(0, ge=0)
    max_rows: int | None = None
    # Schema evolution: a file with a column the contract does not know is read
    # (the column is kept only in raw_record) instead of failing the run.
    allow_new_columns: bool = False
    max_clock_skew_hours: float = Field(24.0, ge=0)
    # Event timestamps before this instant are quarantined (epoch-0 and default dates).
    min_event_ts: dt.datetime = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    # Volume check against history: the run's row count must lie within
    # [median / tolerance, median * tolerance] of the last `volume_history_runs`
    # successful runs of other dates. None disables it.
    volume_tolerance: float | None = Field(10.0, gt=1)
    volume_history_runs: int = Field(14, ge=1)
    # Expectations whose failure fails the run (exit 3); every other one only warns.
    # Names are GX expectation types, optionally "type:column", or the LakeHound
    # checks "schema_drift" and "invalid_fraction".
    blocking: list[str] = Field(
        default_factory=lambda: [
            "schema_drift",
            "invalid_fraction",
            "expect_table_row_count_to_be_between",
        ]
    )
    # Distribution expectations (mean, quantiles, null fraction) from the contract.
    distribution_checks: bool = True
    # How the classified rows are kept between the writes and GX: memory spills to disk.
    persist: Literal["memory_and_disk", "disk_only"] = "memory_and_disk"
    data_docs: bool = True
    # A dated run also quarantines (reason "duplicate") a valid row whose key the
    # validated table already holds on one of the previous dedup_days dates, so
    # nightly per-date runs keep a key once as a run over all dates does. 0: off.
    dedup_days: int = Field(7, ge=0)

    @field_validator("min_event_ts")
    @classmethod
    def _aware(cls, v: dt.datetime) -> dt.datetime:
        # A naive floor would be compared in the session zone; make UTC explicit.
        return v if v.tzinfo else v.replace(tzinfo=dt.UTC)


class SessionSettings(_Model):
    """Log sessions (``features.source: log_sessions``): lines grouped by a key found
    in each line; see lakehound.features.sessions."""

    # Regex searched in key_column; its group 1 (or the whole match) is the session key.
    key_pattern: str
    key_column: str = "message"
    # A line's template is "rare" with fewer earlier lines than this.
    rare_min_count: int = Field(10, ge=1)

    @field_validator("key_pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        import re

        try:
            groups = re.compile(v).groups
        except re.error as exc:
            raise ValueError(f"not a valid regex: {exc}") from None
        if groups > 1:
            raise ValueError(f"must have at most one group (the key), has {groups}")
        return v


class FeatureSettings(_Model):
    lookback_days: int = Field(30, ge=0)
    lateness_hours: float = Field(24.0, ge=0)
    label_delay_days: int = Field(7, ge=0)
    # Feature set in lakehound.features.registry; empty: the dataset's name.
    source: str = ""
    # Logs given as raw lines: a regex with named fields (empty: the built-in
    # generic pattern) and the Spark datetime pattern of its timestamp (empty: ISO).
    log_pattern: str = ""
    log_groups: dict[str, int] = Field(default_factory=dict)
    log_ts_format: str = ""
    # Session windows instead of time windows (features.source: log_sessions).
    sessions: SessionSettings | None = None


class ThresholdSettings(_Model):
    policy: Literal["contamination", "quantile", "static"] = "contamination"
    value: float = 0.01

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
        return v


class DetectorSettings(_Model):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    features: list[str] = Field(default_factory=list)
    threshold: ThresholdSettings = ThresholdSettings()
    weight: float = Field(1.0, ge=0)
    # sklearn runs inside a pandas UDF; synapseml runs in the JVM, no Python round trip.
    engine: Literal["python", "synapseml"] = "python"
    # The name scores, alerts and the registry know this member by.
    alias: str | None = None

    @property
    def id(self) -> str:
        if self.alias:
            return self.alias
        return self.name if self.engine == "python" else f"{self.engine}_{self.name}"


class ScoringSettings(_Model):
    detectors: list[DetectorSettings] = Field(default_factory=list)
    ensemble: Literal["mean", "max", "weighted"] = "mean"
    alert_severity: float = Field(95.0, ge=0, le=100)
    top_features: int = Field(3, ge=1)
    model_version: str | None = None  # pin a version; default: the newest trained


class TuningSettings(_Model):
    # Tune when the training window holds at least this many labelled anomalies
    # (labels table or analyst feedback); below it the configured params are used.
    enabled: bool = True
    min_positive_labels: int = Field(5, ge=1)
    # The latest fraction of the window (by event time) validates; never a random split.
    valid_fraction: float = Field(0.3, gt=0, lt=1)
    # detector name -> {param: [values]}; a detector not listed uses the built-in grid.
    grid: dict[str, dict[str, list[Any]]] = Field(default_factory=dict)


class SupervisedSettings(_Model):
    # Add a scikit-learn classifier on confirmed labels to the ensemble when the
    # window holds at least `min_positive_labels` labelled anomalies. It is scored
    # only if `scoring.detectors` lists a detector named `supervised`.
    enabled: bool = True
    min_positive_labels: int = Field(20, ge=2)
    params: dict[str, Any] = Field(default_factory=dict)


class TrainSettings(_Model):
    train_days: int = Field(7, ge=1)
    sample_rows: int = Field(50_000, ge=100)
    seed: int = 7
    # auto: production when the detector has no production model yet, else candidate
    # (jobs/evaluate.py --promote decides); production/candidate force the status.
    register_as: Literal["auto", "production", "candidate"] = "auto"
    # Labels used for tuning: the dataset's `labels` table (generated or real data)
    # and/or the analysts' `feedback` table (feedback wins where both exist).
    use_labels_table: bool = True
    use_feedback: bool = True
    tuning: TuningSettings = TuningSettings()
    supervised: SupervisedSettings = SupervisedSettings()


class EvaluationSettings(_Model):
    # Metrics are computed on at most this many labelled rows per detector, sampled
    # by the executors (all rows when the window is smaller).
    max_rows: int = Field(500_000, ge=100)
    precision_at_k: list[int] = Field(default_factory=lambda: [100])
    # Promotion: the candidate's PR-AUC must exceed production's by more than this.
    min_pr_auc_gain: float = Field(0.0, ge=0)
    # Days of features the promotion compares candidate and production on.
    window_days: int = Field(7, ge=1)


class DriftSettings(_Model):
    # Recent window compared with the training window of the production model.
    recent_days: int = Field(7, ge=1)
    sample_rows: int = Field(100_000, ge=100)
    psi_bins: int = Field(10, ge=2)
    # PSI levels: moderate and significant (retrain recommended at significant).
    psi_moderate: float = Field(0.1, gt=0)
    psi_significant: float = Field(0.25, gt=0)
    ks_significant: float = Field(0.2, gt=0, le=1)
    # Alert rate: recent/training ratio above this (or below its inverse) is drift.
    alert_rate_ratio: float = Field(2.0, gt=1)
    # Retrain (as candidates) and run the promotion when drift is significant.
    retrain: bool = False


class StreamSettings(_Model):
    """Live scoring (jobs/stream.py): where events come from and where alerts go."""

    source: Literal["kafka", "files"] = "kafka"
    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "transactions"
    # Offsets to start from when the checkpoint is new.
    starting_offsets: Literal["earliest", "latest"] = "earliest"
    # Cap on messages (Kafka) or files (landing folder) per micro-batch; None: no cap.
    max_per_trigger: int | None = Field(None, ge=1)
    # Landing folder mode: new files in this directory are the input.
    landing_dir: str = "data/landing/transactions"
    landing_format: Literal["json", "csv"] = "json"
    # Empty: <lakehouse>/<dataset>/_checkpoints/stream.
    checkpoint_dir: str = ""
    trigger_interval: str = "1 second"
    # Trigger of the entity-window aggregate. Nothing waits on that table the way
    # alerts wait on scores, and on a small machine a second query looping back to
    # back takes the cores the scoring query needs.
    windows_trigger_interval: str = "30 seconds"
    # Event-time watermark and window of the per-entity stateful aggregate.
    watermark: str = "10 minutes"
    window: str = "1 hour"
    # Webhook for alerts; empty: no webhook delivery.
    webhook_url: str = ""
    webhook_retries: int = Field(3, ge=0)
    webhook_backoff_seconds: float = Field(0.5, ge=0)
    webhook_timeout_seconds: float = Field(5.0, gt=0)
    # Kafka topic alerts are published to; empty: not published.
    alerts_topic: str = ""
    # A message longer than this is quarantined (payload_too_large) with a truncated copy.
    max_payload_bytes: int = Field(65_536, ge=64)
    # How often the job prints progress and appends it to `stream_progress`.
    progress_seconds: float = Field(5.0, gt=0)
    # A query that fails (e.g. the broker is away too long) is restarted from its
    # checkpoint; after this many failures in a row with no completed trigger between
    # them the job exits. A trigger completed after a restart clears the count.
    max_restarts: int = Field(3, ge=0)


class MaintenanceSettings(_Model):
    """Nightly table upkeep (jobs/maintain.py): compaction and VACUUM of every table."""

    # VACUUM deletes files no table version within this many hours references. Delta
    # refuses less than a table's delta.deletedFileRetentionDuration (7 days) while
    # spark.databricks.delta.retentionDurationCheck.enabled is on: a reader or a stream
    # still on an older version would lose its files.
    vacuum_retention_hours: float = Field(168.0, ge=0)
    # Spark tasks VACUUM lists a table's directories in; None: four per core of the
    # session (Spark's own default, 10,000, is minutes of empty tasks on a laptop).
    vacuum_listing_parallelism: int | None = Field(None, ge=1)
    # Tables of the dataset to leave alone (e.g. one another team compacts).
    skip: list[str] = Field(default_factory=list)
    # Attempts per table when another writer (the live stream) commits first.
    conflict_attempts: int = Field(3, ge=1)


class ServeSettings(_Model):
    """The real-time endpoint (jobs/serve.py): binding, limits, durability, models."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # Bearer token for POST /invocations; required when host is not a loopback
    # address (LAKEHOUND_SERVE_TOKEN, if set, wins). Empty: no token.
    token: str = ""
    # Requests above these are refused (413) before any parsing or scoring.
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_batch_events: int = Field(10_000, ge=1)
    # A request still running after this many seconds gets a 503 (the events it
    # accepted stay accepted: they are in the write-ahead log).
    request_timeout_seconds: float = Field(10.0, gt=0)
    # Write-ahead log of accepted and quarantined events; empty:
    # <lakehouse>/<dataset>/_serve/wal.
    wal_dir: str = ""
    # Closed log segments are written to Delta (scores, alerts, stream_events,
    # quarantine) this often; a segment is also closed at this many events.
    flush_seconds: float = Field(30.0, gt=0)
    segment_events: int = Field(50_000, ge=1)
    # How often the registry is polled for a newly promoted production version.
    refresh_seconds: float = Field(30.0, gt=0)
    access_log: bool = True


class Config(_Model):
    dataset: str
    environment: str = "local"
    lakehouse: str = "lakehouse"
    labels_path: str = ""
    spark: SparkSettings = SparkSettings()
    input: InputSettings = InputSettings()
    generate: GenerateSettings = GenerateSettings()
    validation: ValidationSettings = ValidationSettings()
    features: FeatureSettings = FeatureSettings()
    train: TrainSettings = TrainSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    drift: DriftSettings = DriftSettings()
    scoring: ScoringSettings = ScoringSettings()
    stream: StreamSettings = StreamSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    serve: ServeSettings = ServeSettings()

    @field_validator("dataset")
    @classmethod
    def _identifier(cls, v: str) -> str:
        # The dataset doubles as the catalog database name.
        if not v.isidentifier():
            raise ValueError(f"must be a SQL identifier, got {v!r}")
        return v


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(item: str) -> dict[str, Any]:
    """Turn ``a.b=value`` into ``{"a": {"b": value}}``; the value is parsed as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    node: dict[str, Any] = {}
    cursor = node
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor[part] = {}
        cursor = cursor[part]
    cursor[parts[-1]] = value
    return node


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "<root>"
    if first["type"] == "extra_forbidden":
        return f"unknown config key '{key}'"
    value = first.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict) else ""
    return f"bad value for config key '{key}': {first['msg']}{shown}"


def load_config(
    path: str | Path,
    overrides: list[str] | None = None,
    environment: str | None = None,
) -> Config:
    """Load and validate the layered config for one dataset file."""
    path = Path(path)
    conf_dir = path.resolve().parent
    merged: dict[str, Any] = {}
    base = conf_dir / "base.yaml"
    if base.exists() and base.resolve() != path.resolve():
        merged = _read_yaml(base)
    merged = _merge(merged, _read_yaml(path))
    override_layers = [parse_override(o) for o in overrides or []]
    for layer in override_layers:
        merged = _merge(merged, layer)
    env = environment or merged.get("environment") or "local"
    env_file = conf_dir / "env" / f"{env}.yaml"
    if env_file.exists():
        merged = _merge(merged, _read_yaml(env_file))
        # --set still wins over the environment overlay.
        for layer in override_layers:
            merged = _merge(merged, layer)
    elif environment is not None or "environment" in merged:
        raise ConfigError(f"unknown environment '{env}': no file {env_file}")
    merged["environment"] = env
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
