"""The Great Expectations suite that goes with a contract.

Built from the contract's field specs, so the rules and the suite cannot drift
apart. The suite runs on the *validated* rows: the row-level expectations there are
a guard (the row rules already removed offenders, so a failure means a bug) and
the dataset-level ones are the real check: row count against the usual volume,
distribution (mean, quantiles, null fraction) against the contract's bounds.

Every expectation carries ``meta["lakehound_id"]`` = ``<type>`` or
``<type>:<column>``, the name the blocking policy (``validation.blocking``) uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import great_expectations as gx
from great_expectations.compatibility import pydantic
from great_expectations.core.suite_parameters import SuiteParameterDict
from great_expectations.expectations import Expectation
from pyspark.sql.types import NumericType

from schemas.base import Contract

gxe = gx.expectations


@dataclass(frozen=True)
class SuiteOptions:
    """What the suite needs besides the contract."""

    min_rows: int | None = None
    max_rows: int | None = None
    distribution: bool = True
    # Rank error of the quantile checks (Spark's approxQuantile): 0 would be exact,
    # which keeps every value of the column in one summary on the driver.
    quantile_relative_error: float = 0.001


class ExpectColumnApproxQuantileValuesToBeBetween(gxe.ExpectColumnQuantileValuesToBeBetween):
    """GX's quantile expectation with a float ``allow_relative_error``.

    GX 1.x declares the field as ``bool | str``, so a float such as 0.001 is stored
    as the string "0.001", which its own Spark metric then rejects; only exact
    quantiles (a full sort and O(rows) memory) were possible. Same metric, same
    renderers (GX registers the inherited ones under this type's name).
    """

    # pydantic tries the types in order: False stays a bool, 0.001 a float (not "0.001").
    allow_relative_error: bool | float | str | SuiteParameterDict = pydantic.Field(  # type: ignore[assignment]  # widened on purpose
        default=False,
        description="Spark approxQuantile relative error (0 or False: exact).",
    )


def expectation_id(expectation_type: str, column: str | None) -> str:
    return f"{expectation_type}:{column}" if column else expectation_type


def _tag(exp: Expectation, column: str | None = None) -> Expectation:
    exp.meta = {"lakehound_id": expectation_id(exp.expectation_type, column)}
    return exp


def build_expectations(contract: Contract, options: SuiteOptions) -> list[Expectation]:
    """The contract's expectations, in a stable order (Data Docs and tests rely on it)."""
    out: list[Expectation] = [
        _tag(gxe.ExpectTableColumnsToMatchSet(column_set=contract.column_names, exact_match=False)),
        _tag(
            gxe.ExpectTableRowCountToBeBetween(
                min_value=options.min_rows, max_value=options.max_rows
            )
        ),
    ]
    for key in contract.key:
        out.append(_tag(gxe.ExpectColumnValuesToNotBeNull(column=key), key))
    if len(contract.key) == 1:
        out.append(_tag(gxe.ExpectColumnValuesToBeUnique(column=contract.key[0]), contract.key[0]))
    elif contract.key:
        out.append(_tag(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(contract.key))))
    for spec in contract.fields:
        name = spec.name
        out.append(
            _tag(
                gxe.ExpectColumnValuesToBeOfType(column=name, type_=type(spec.dtype).__name__), name
            )
        )
        if spec.allowed is not None:
            out.append(
                _tag(
                    gxe.ExpectColumnValuesToBeInSet(column=name, value_set=list(spec.allowed)), name
                )
            )
        if isinstance(spec.dtype, NumericType) and (
            spec.min_value is not None or spec.max_value is not None
        ):
            out.append(
                _tag(
                    gxe.ExpectColumnValuesToBeBetween(
                        column=name,
                        min_value=spec.min_value,
                        max_value=spec.max_value,
                        strict_min=spec.min_exclusive,
                    ),
                    name,
                )
            )
        if not options.distribution:
            continue
        if spec.mean_range is not None:
            low, high = spec.mean_range
            out.append(
                _tag(
                    gxe.ExpectColumnMeanToBeBetween(column=name, min_value=low, max_value=high),
                    name,
                )
            )
        if spec.quantile_ranges:
            ranges: dict[str, Any] = {
                "quantiles": [q for q, _, _ in spec.quantile_ranges],
                "value_ranges": [[lo, hi] for _, lo, hi in spec.quantile_ranges],
            }
            out.append(
                _tag(
                    ExpectColumnApproxQuantileValuesToBeBetween(
                        column=name,
                        quantile_ranges=ranges,
                        allow_relative_error=options.quantile_relative_error,
                    ),
                    name,
                )
            )
        if spec.max_null_fraction is not None and not contract.is_required(name):
            out.append(
                _tag(
                    gxe.ExpectColumnValuesToNotBeNull(
                        column=name, mostly=max(0.0, 1.0 - spec.max_null_fraction)
                    ),
                    name,
                )
            )
    return out


def build_suite(contract: Contract, options: SuiteOptions) -> gx.ExpectationSuite:
    """A fresh (unsaved) suite named ``<contract>_v<version>``."""
    # Built in one go: add_expectation() on an unbound suite needs an active context.
    return gx.ExpectationSuite(
        name=f"{contract.name}_v{contract.version}",
        expectations=build_expectations(contract, options),
    )
