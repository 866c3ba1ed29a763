"""Data contracts as code: a versioned Spark schema with one comment per field.

A :class:`Contract` is the single source of truth for a dataset's shape: readers
pass ``contract.schema()`` (never ``inferSchema``), the catalog gets the field
comments, and the validation layer attaches its expectation suite to it.

Besides the shape, a field may declare the row-level rules a value must pass
(required, range, finiteness, allowed set, length) and the dataset-level
distribution bounds that catch a silently broken upstream feed (mean, quantiles,
null fraction). The rules are data, not code: ``lakehound.validation.rules`` turns
them into Spark expressions and ``schemas.expectations`` into a Great Expectations
suite, so both always agree with the contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql.types import DataType, StructField, StructType


@dataclass(frozen=True)
class FieldSpec:
    name: str
    dtype: DataType
    comment: str
    nullable: bool = True
    # --- row-level rules (a failing row is quarantined with the rule's reason) ---
    # A required value must be present (keys and the event time are always required).
    required: bool = False
    min_value: float | None = None
    # True: the value must be strictly greater than min_value (amount > 0).
    min_exclusive: bool = False
    max_value: float | None = None
    # Numbers must not be NaN or +-Infinity.
    finite: bool = False
    allowed: tuple[str, ...] | None = None
    max_length: int | None = None
    # --- dataset-level distribution bounds (Great Expectations, on validated rows) ---
    mean_range: tuple[float, float] | None = None
    # (quantile, low, high) triples, e.g. ((0.5, 5.0, 200.0),).
    quantile_ranges: tuple[tuple[float, float, float], ...] = ()
    # At most this fraction of nulls (only meaningful for optional fields).
    max_null_fraction: float | None = None
    # Filled by the reader's adapter (e.g. from the file name), not present in the raw input.
    derived: bool = False

    def struct_field(self) -> StructField:
        return StructField(self.name, self.dtype, self.nullable, {"comment": self.comment})


@dataclass(frozen=True)
class Contract:
    """A versioned dataset contract."""

    name: str
    version: str
    fields: tuple[FieldSpec, ...]
    description: str = ""
    key: tuple[str, ...] = ()
    event_time: str | None = None
    quirks: tuple[str, ...] = field(default_factory=tuple)
    # Name of the line parser for ``text`` inputs (see lakehound.validation.adapters).
    parser: str | None = None

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(names) != len(set(names)):
            raise ValueError(f"contract {self.name}: duplicate field names in {names}")
        unknown = [k for k in (*self.key, self.event_time) if k and k not in names]
        if unknown:
            raise ValueError(f"contract {self.name}: key/event_time {unknown} not in fields")

    def schema(self) -> StructType:
        return StructType([f.struct_field() for f in self.fields])

    @property
    def column_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def source_columns(self) -> list[str]:
        """The columns the raw input must carry (derived ones are added by the reader)."""
        return [f.name for f in self.fields if not f.derived]

    def comments(self) -> dict[str, str]:
        return {f.name: f.comment for f in self.fields}

    def spec(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"contract {self.name} has no field {name!r}")

    def is_required(self, name: str) -> bool:
        """Keys and the event time are implicitly required; others per their spec."""
        return name in self.key or name == self.event_time or self.spec(name).required
