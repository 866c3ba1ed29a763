"""One entry point per feature source: validated rows (+ look-back) -> feature rows.

The featurize job and the tests call :func:`build_features`; it picks the builder
of ``features.source`` (default: the dataset name), adapts the validated columns
the builder needs, and returns exactly the registry's columns for that source,
after ``event_id, entity_id, event_ts, event_date``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehound.config import Config
from lakehound.errors import ConfigError, InputError
from lakehound.features import logs as flogs
from lakehound.features import registry
from lakehound.features import sessions as fsessions
from lakehound.features.timeseries import series_features
from lakehound.features.transactions import (
    CARDTX_WINDOWS,
    RISK_WINDOW_DAYS,
    cardtx_features,
    transaction_features,
)

KEY_COLUMNS = ("event_id", "entity_id", "event_ts", "event_date")
LOG_SOURCES = ("logs", "bgl", "log_sessions")
SERIES_SOURCES = ("sensors", "nab")
SOURCES = ("transactions", "cardtx", *LOG_SOURCES, *SERIES_SOURCES)
# Series id column of each series source (generated machines, NAB file key).
SERIES_ID = {"sensors": "machine_id", "nab": "series_id"}


def source_of(cfg: Config) -> str:
    src = cfg.features.source or cfg.dataset
    if src not in SOURCES:
        raise ConfigError(
            f"features.source '{src}' has no feature builder (known: {', '.join(SOURCES)})"
        )
    return src


def lookback_days(cfg: Config) -> int:
    """Days of history before the first run date that ``source`` needs."""
    src = source_of(cfg)
    f = cfg.features
    if src == "transactions":
        return max(f.lookback_days, f.label_delay_days + RISK_WINDOW_DAYS)
    if src == "cardtx":
        return max(CARDTX_WINDOWS) + f.label_delay_days
    if src in LOG_SOURCES:
        return math.ceil(flogs.duration_seconds(flogs.NOVELTY_HORIZON) / 86400)
    spec = registry.SERIES_SPECS[src]
    longest = max(*spec.windows, *spec.lags, spec.max_fill_steps) * spec.step_seconds
    return math.ceil(longest / 86400)


def parse_logs(df: DataFrame, cfg: Config) -> DataFrame:
    """Validated log rows -> parsed lines. Already-parsed rows pass through; raw
    lines (a ``line`` or ``value`` column) are parsed with BGL's layout (``bgl``)
    or the configured generic pattern."""
    if all(c in df.columns for c in flogs.PARSED_COLUMNS):
        return df
    line_col = next((c for c in ("line", "value") if c in df.columns), None)
    if line_col is None:
        raise InputError(
            f"log rows need {flogs.PARSED_COLUMNS} or a raw 'line'/'value' column; got {df.columns}"
        )
    if source_of(cfg) == "bgl":
        return flogs.parse_bgl(df, line_col)
    f = cfg.features
    return flogs.parse_generic(
        df,
        f.log_pattern or flogs.GENERIC_PATTERN,
        f.log_groups or None,
        line_col=line_col,
        ts_format=f.log_ts_format or None,
    )


def _session_features(validated: DataFrame, cfg: Config, templates: DataFrame | None) -> DataFrame:
    s = cfg.features.sessions
    if s is None:
        raise ConfigError("features.source 'log_sessions' needs features.sessions.key_pattern")
    spec = fsessions.SessionSpec(s.key_pattern, s.key_column, s.rare_min_count)
    parsed = flogs.assign_templates(parse_logs(validated, cfg), templates)
    feats = fsessions.session_features(fsessions.with_session_keys(parsed, spec), spec)
    return feats.withColumn("entity_id", F.col("session_id"))


def build_features(
    validated: DataFrame,
    cfg: Config,
    dates: Sequence[dt.date],
    *,
    labels: DataFrame | None = None,
    templates: DataFrame | None = None,
    emit: Column | None = None,
) -> DataFrame:
    """Pure transform: validated rows (with look-back) -> the run dates' feature rows.

    ``labels`` (``transaction_id, is_anomaly``) feeds the fraud-risk features of
    the transaction sources; ``templates`` (from :func:`flogs.mine_templates`)
    fixes the log templates (without it each masked message is its own template).
    ``emit`` (``transactions`` source): a predicate on ``validated``'s columns that
    narrows the returned rows further than ``dates`` (a micro-batch's own events
    among the look-back rows of the same day); the other rows only feed windows.
    """
    src = source_of(cfg)
    delay = cfg.features.label_delay_days
    if src == "transactions":
        # Only the run's dates are probed for merchant windows; the look-back feeds them.
        on_dates = F.to_date("event_ts").isin(list(dates))
        emit = on_dates if emit is None else on_dates & emit
        feats = transaction_features(
            validated, cfg.features.lookback_days, labels, delay, emit=emit
        )
    elif src == "cardtx":
        feats = cardtx_features(validated, labels, delay)
    elif src == "log_sessions":
        feats = _session_features(validated, cfg, templates)
    elif src in LOG_SOURCES:
        parsed = flogs.assign_templates(parse_logs(validated, cfg), templates)
        feats = flogs.log_features(
            parsed,
            registry.LOG_WINDOW,
            entity=registry.LOG_ENTITIES[src],
            history_windows=registry.LOG_HISTORY_WINDOWS,
            max_silence=registry.LOG_MAX_SILENCE,
            novelty_horizon=registry.LOG_NOVELTY_HORIZON,
        ).drop("window_start")
    else:
        feats = series_features(validated, registry.SERIES_SPECS[src], id_col=SERIES_ID[src])
    names = registry.feature_names(src)
    return feats.select(*KEY_COLUMNS, *names).where(F.col("event_date").isin(list(dates)))
