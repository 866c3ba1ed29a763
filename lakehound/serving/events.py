"""One raw event -> typed values and the reasons it breaks the contract, in plain Python.

The same rules, reasons and order as :func:`lakehound.validation.rules.field_reasons`
(the Spark expressions ``validate`` and the stream use), applied to one event at a
time so the endpoint answers without a Spark job: ``invalid_type``, ``missing``,
``not_finite``, ``below_min``/``above_max``, ``before_floor``/``in_future``,
``not_in_set``, ``too_long``, plus ``malformed_record``, ``bad_encoding`` and
``duplicate`` (the key was accepted before). Values arrive as text (a JSON value
is read as its text, as the stream's string schema does) and are typed as Spark's
``try_cast`` would type them. tests/serving/test_events.py checks the reasons
against :func:`~lakehound.validation.rules.classify` on the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from pyspark.sql.types import (
    DateType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    NumericType,
    StringType,
    TimestampNTZType,
    TimestampType,
)

from lakehound.config import ValidationSettings
from lakehound.validation.rules import DUPLICATE
from schemas.base import Contract, FieldSpec

MALFORMED = "malformed_record"
BAD_ENCODING = "bad_encoding"
# Java's Double.parseDouble (Spark's cast) takes these; Python's float() takes
# others (underscores) that Spark refuses.
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[dDfF]?$")
_SPECIAL = {"nan": math.nan, "infinity": math.inf, "+infinity": math.inf, "inf": math.inf,
            "+inf": math.inf, "-infinity": -math.inf, "-inf": -math.inf}  # fmt: skip


@dataclass(frozen=True)
class Checked:
    """One event after the rules: typed values (None where untyped) and its reasons."""

    values: dict[str, Any]
    raw: str
    reasons: list[str]

    @property
    def ok(self) -> bool:
        return not self.reasons


def as_text(value: Any) -> str | None:
    """A JSON value as the stream's string schema reads it (numbers as their text)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    # Objects and arrays: their JSON text, which no scalar type parses.
    return json.dumps(value, separators=(",", ":"))


def _double(text: str) -> float | None:
    t = text.strip()
    special = _SPECIAL.get(t.lower())
    if special is not None:
        return special
    if not _NUMBER.match(t):
        return None
    return float(t.rstrip("dDfF"))


def _timestamp(text: str) -> dt.datetime | None:
    """ISO 8601 as Spark casts it: an offset is converted to UTC, none means UTC."""
    t = text.strip()
    if len(t) < 10:
        return None
    try:
        v = dt.datetime.fromisoformat(t.replace("z", "Z"))
    except ValueError:
        return None
    if v.tzinfo is not None:
        v = v.astimezone(dt.UTC).replace(tzinfo=None)
    return v


def typed_value(spec: FieldSpec, text: str | None) -> Any:
    """``text`` typed as ``spec.dtype`` (None when it does not parse, like try_cast)."""
    if text is None:
        return None
    d = spec.dtype
    if isinstance(d, StringType):
        return text
    if isinstance(d, DoubleType | FloatType):
        return _double(text)
    if isinstance(d, IntegerType | LongType):
        t = text.strip()
        return int(t) if re.fullmatch(r"[+-]?\d+", t) else None
    if isinstance(d, TimestampType | TimestampNTZType):
        return _timestamp(text)
    if isinstance(d, DateType):
        v = _timestamp(text)
        return v.date() if v is not None else None
    return None


def _blank(text: str | None) -> bool:
    return text is None or text.strip() == ""


def field_reasons(
    spec: FieldSpec,
    text: str | None,
    typed: Any,
    required: bool,
    settings: ValidationSettings,
    now: dt.datetime,
) -> list[str]:
    """:func:`lakehound.validation.rules.field_reasons` for one value."""
    name = spec.name
    out: list[str] = []
    if not _blank(text) and typed is None:
        out.append(f"invalid_type:{name}")
    if required and _blank(text):
        out.append(f"missing:{name}")
    present = typed is not None and not _blank(text)
    if not present:
        return out
    if isinstance(spec.dtype, DoubleType | FloatType) and spec.finite and not math.isfinite(typed):
        out.append(f"not_finite:{name}")
    if isinstance(spec.dtype, NumericType) and math.isfinite(float(typed)):
        if spec.min_value is not None:
            low = typed <= spec.min_value if spec.min_exclusive else typed < spec.min_value
            if low:
                out.append(f"below_min:{name}")
        if spec.max_value is not None and typed > spec.max_value:
            out.append(f"above_max:{name}")
    if isinstance(spec.dtype, TimestampType | TimestampNTZType | DateType):
        ts = typed if isinstance(typed, dt.datetime) else dt.datetime.combine(typed, dt.time())
        floor = settings.min_event_ts.astimezone(dt.UTC).replace(tzinfo=None)
        ceiling = (
            (now + dt.timedelta(hours=settings.max_clock_skew_hours))
            .astimezone(dt.UTC)
            .replace(tzinfo=None)
        )
        if ts < floor:
            out.append(f"before_floor:{name}")
        if ts > ceiling:
            out.append(f"in_future:{name}")
    if spec.allowed is not None and typed not in spec.allowed:
        out.append(f"not_in_set:{name}")
    if spec.max_length is not None and len(str(typed)) > spec.max_length:
        out.append(f"too_long:{name}")
    return out


def check(
    fields: dict[str, Any] | None,
    raw: str,
    contract: Contract,
    settings: ValidationSettings,
    now: dt.datetime,
    seen: Collection[str] = (),
) -> Checked:
    """Type and check one event. ``fields`` is None for a record that could not be
    parsed into fields (malformed); ``seen``: keys already accepted (duplicate rule,
    which, as in ``classify``, replaces the reasons of an otherwise valid event)."""
    reasons: list[str] = []
    if fields is None:
        reasons.append(MALFORMED)
        fields = {}
    if "\ufffd" in raw:
        reasons.append(BAD_ENCODING)
    values: dict[str, Any] = {}
    for spec in contract.fields:
        text = as_text(fields.get(spec.name))
        typed = typed_value(spec, text)
        values[spec.name] = typed
        reasons += field_reasons(spec, text, typed, contract.is_required(spec.name), settings, now)
    # compact(): distinct, in order.
    reasons = list(dict.fromkeys(reasons))
    if not reasons and contract.key:
        key = "|".join(str(values[k]) for k in contract.key)
        if key in seen:
            reasons = [DUPLICATE]
    return Checked(values, raw, reasons)
