"""The one feature registry: every feature's name, meaning, entity, window and source.

Training and scoring both read their feature list from here (and record
:func:`registry_version` with a model), so the two can never drift apart: a
changed definition changes the version, and a model trained on another version
can be refused. Feature functions do not repeat names: the log and series
builders derive their output columns from the same catalogs this module wraps,
and a test checks the columns they write equal the registry's names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from lakehound.features import logs as _logs
from lakehound.features import sessions as _sessions
from lakehound.features import transactions as _tx
from lakehound.features.timeseries import SeriesSpec, feature_catalog

_DTYPES = ("double", "int", "bigint", "string", "boolean", "map<string,bigint>")


@dataclass(frozen=True)
class FeatureDef:
    """One feature column of a ``features`` table.

    ``entity`` is what a row describes (account, host, series, ...), ``window``
    the period the value summarises (``row`` for the row alone, ``1h``, ``7d``,
    ``history``), ``source`` the registry key (``transactions``, ``logs``,
    ``sensors``, ``nab``).
    """

    name: str
    description: str
    entity: str
    window: str
    source: str
    dtype: str = "double"

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"FeatureDef: name must be an identifier, got {self.name!r}")
        if not self.description.strip():
            raise ValueError(f"FeatureDef {self.name}: description is empty")
        if self.dtype not in _DTYPES:
            raise ValueError(f"FeatureDef {self.name}: dtype {self.dtype!r} not in {_DTYPES}")

    @property
    def numeric(self) -> bool:
        return self.dtype in ("double", "int", "bigint")


# ---------------------------------------------------------------------------
# Transactions: one row per transaction; see lakehound.features.transactions.
# ---------------------------------------------------------------------------
TRANSACTION_FEATURES: list[FeatureDef] = [
    FeatureDef("log_amount", "log(1 + amount) of this payment", "transaction", "row", "transactions"),
    FeatureDef("acct_count_1h", "payments of the account in the last hour, this one included", "account", "1h", "transactions"),
    FeatureDef("acct_count_1d", "payments of the account in the last 24 h, this one included", "account", "1d", "transactions"),
    FeatureDef("acct_count_7d", "payments of the account in the last 7 days, this one included", "account", "7d", "transactions"),
    FeatureDef("acct_amount_sum_1d", "log(1 + sum of amounts) of the account in the last 24 h", "account", "1d", "transactions"),
    FeatureDef("acct_amount_z_30d", "z of log amount against the account's previous 30 days (0 with < 3 payments)", "account", "30d", "transactions"),
    FeatureDef("acct_amount_std_30d", "std of log amount over the account's previous 30 days", "account", "30d", "transactions"),
    FeatureDef("acct_secs_since_prev", "log(1 + seconds) since the account's previous payment (horizon if none)", "account", "30d", "transactions"),
    FeatureDef("acct_new_merchant", "1 if the account never paid this merchant in the previous 30 days", "account", "30d", "transactions"),
    FeatureDef("acct_new_country", "1 if the account never paid in this country in the previous 30 days", "account", "30d", "transactions"),
    FeatureDef("acct_hour_deviation", "1 - cos(angle between this hour and the account's usual hour), 0..2", "account", "30d", "transactions"),
    FeatureDef("merchant_count_1d", "payments to the merchant in the last 24 h, this one included", "merchant", "1d", "transactions"),
    FeatureDef("merchant_amount_z_7d", "z of log amount against the merchant's previous 7 days", "merchant", "7d", "transactions"),
    FeatureDef("hour_sin", "sin of the hour of day (cyclic encoding)", "transaction", "row", "transactions"),
    FeatureDef("hour_cos", "cos of the hour of day (cyclic encoding)", "transaction", "row", "transactions"),
    FeatureDef("dow_sin", "sin of the day of week (cyclic encoding)", "transaction", "row", "transactions"),
    FeatureDef("dow_cos", "cos of the day of week (cyclic encoding)", "transaction", "row", "transactions"),
]  # fmt: skip

_GRID_TEXT = {
    "count": "payments of the {who} in the last {w}, this one included",
    "amount_sum": "log(1 + sum of amounts) of the {who} in the last {w}, this one included",
    "amount_mean": "mean log amount of the {who} in the last {w}, this one included",
    "amount_std": "sample std of log amount of the {who} in the last {w}, this one included (0 if 1 payment)",
}
_ENTITY = {"acct": "account", "merchant": "merchant"}
for _e, _who in _ENTITY.items():
    for _name in _tx.grid_columns(_e):
        _stat, _w = _name[len(_e) + 1 :].rsplit("_", 1)
        TRANSACTION_FEATURES.append(
            FeatureDef(_name, _GRID_TEXT[_stat].format(who=_who, w=_w), _who, _w, "transactions")
        )
TRANSACTION_FEATURES.append(
    FeatureDef(
        "merchant_risk_7d",
        "share of the merchant's payments labelled fraud over the 7 days ending "
        "features.label_delay_days before this one (labels arrive late; 0 if none)",
        "merchant",
        "7d",
        "transactions",
    )
)

# ---------------------------------------------------------------------------
# cardtx: the Fraud Detection Handbook simulator (card, terminal); the handbook's
# 15 features, see lakehound.features.transactions.cardtx_features.
# ---------------------------------------------------------------------------
CARDTX_FEATURES: list[FeatureDef] = [
    FeatureDef("tx_amount", "amount of this transaction", "transaction", "row", "cardtx"),
    FeatureDef("tx_during_weekend", "1 if on Saturday or Sunday", "transaction", "row", "cardtx"),
    FeatureDef("tx_during_night", "1 if between 00:00 and 06:59", "transaction", "row", "cardtx"),
]
for _d in _tx.CARDTX_WINDOWS:
    CARDTX_FEATURES += [
        FeatureDef(f"card_nb_tx_{_d}d", f"transactions of the card in the last {_d} day(s), this one included", "card", f"{_d}d", "cardtx"),
        FeatureDef(f"card_avg_amount_{_d}d", f"mean amount of the card in the last {_d} day(s), this one included", "card", f"{_d}d", "cardtx"),
    ]  # fmt: skip
for _d in _tx.CARDTX_WINDOWS:
    CARDTX_FEATURES += [
        FeatureDef(f"terminal_nb_tx_{_d}d", f"transactions of the terminal in the {_d} day(s) ending label_delay_days ago", "terminal", f"{_d}d", "cardtx"),
        FeatureDef(f"terminal_risk_{_d}d", f"share labelled fraud of the terminal's transactions in the {_d} day(s) ending label_delay_days ago (0 if none)", "terminal", f"{_d}d", "cardtx"),
    ]  # fmt: skip

# ---------------------------------------------------------------------------
# Logs: one row per (host, 5-minute window); see lakehound.features.logs.
# ---------------------------------------------------------------------------
LOG_WINDOW = _logs.LOG_WINDOW
LOG_ENTITY: tuple[str, ...] = ("host",)
LOG_HISTORY_WINDOWS = _logs.HISTORY_WINDOWS
LOG_NOVELTY_HORIZON = _logs.NOVELTY_HORIZON
LOG_MAX_SILENCE = _logs.MAX_SILENCE

# Entity columns per log source: generated app logs per host; BGL per component
# (its ~70k nodes each write a handful of lines, too few for per-node windows).
LOG_ENTITIES: dict[str, tuple[str, ...]] = {"logs": LOG_ENTITY, "bgl": ("component",)}


def _log_defs(source: str) -> list[FeatureDef]:
    return [
        FeatureDef(name, desc, "|".join(LOG_ENTITIES[source]), window, source, dtype)
        for name, desc, window, dtype in _logs.feature_catalog(
            LOG_WINDOW, LOG_HISTORY_WINDOWS, LOG_NOVELTY_HORIZON
        )
    ]


LOG_FEATURES: list[FeatureDef] = _log_defs("logs")

# ---------------------------------------------------------------------------
# Sensor and metric series: one row per (series, step); see
# lakehound.features.timeseries. The specs are the declaration: the featurize
# job passes SERIES_SPECS[source] to series_features.
# ---------------------------------------------------------------------------
SERIES_SPECS: dict[str, SeriesSpec] = {
    # Generated machines: one reading a minute per machine.
    "sensors": SeriesSpec(
        value_cols=("temperature", "vibration", "pressure"),
        step="1 minute",
        windows=(15, 60, 360),
        lags=(1, 5),
        fill="ffill",
        max_fill_steps=10,
        min_periods=5,
    ),
    # NAB: most series are 5-minutely; windows of 1 h and 1 day.
    "nab": SeriesSpec(
        value_cols=("value",),
        step="5 minutes",
        windows=(12, 288),
        lags=(1, 12),
        fill="ffill",
        max_fill_steps=12,
        min_periods=3,
    ),
}
SERIES_ENTITY = {"sensors": "machine", "nab": "series"}


def _series_defs(source: str) -> list[FeatureDef]:
    spec = SERIES_SPECS[source]
    return [
        FeatureDef(name, desc, SERIES_ENTITY[source], window, source, dtype)
        for name, desc, window, dtype in feature_catalog(spec)
    ]


# Log sessions: one row per session key (features.sessions); see lakehound.features.sessions.
SESSION_FEATURES: list[FeatureDef] = [
    FeatureDef(name, desc, "session", "session", "log_sessions", dtype)
    for name, desc, dtype in _sessions.SESSION_CATALOG
]

REGISTRY: dict[str, list[FeatureDef]] = {
    "transactions": TRANSACTION_FEATURES,
    "cardtx": CARDTX_FEATURES,
    "logs": LOG_FEATURES,
    "bgl": _log_defs("bgl"),
    "log_sessions": SESSION_FEATURES,
    "sensors": _series_defs("sensors"),
    "nab": _series_defs("nab"),
}


def _check_unique() -> None:
    for source, defs in REGISTRY.items():
        names = [d.name for d in defs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feature registry: duplicate names in {source!r}: {dupes}")
        wrong = [d.name for d in defs if d.source != source]
        if wrong:
            raise ValueError(
                f"feature registry: {wrong} filed under {source!r} with another source"
            )


_check_unique()


def features_for(source: str) -> list[FeatureDef]:
    """The definitions of ``source``, in the column order of its features table."""
    try:
        return list(REGISTRY[source])
    except KeyError:
        raise ValueError(
            f"no features registered for source {source!r}; known: {sorted(REGISTRY)}"
        ) from None


def feature_names(source: str, *, numeric_only: bool = False) -> list[str]:
    """Column names of ``source`` (``numeric_only`` drops maps/strings detectors cannot take)."""
    return [d.name for d in features_for(source) if d.numeric or not numeric_only]


def registry_version(source: str) -> str:
    """A stable 12-hex-digit hash of ``source``'s definitions (order included).

    Stored with each trained model; scoring refuses a model whose version differs.
    """
    payload = json.dumps([asdict(d) for d in features_for(source)], sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]
