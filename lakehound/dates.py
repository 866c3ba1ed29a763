"""Which event dates a run covers, derived once and shared by every stage."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehound.errors import InputError
from lakehound.io import DATE_COL


def dates_present(df: DataFrame, column: str = DATE_COL) -> list[dt.date]:
    """Distinct dates of ``df`` (a small aggregate; never collects rows)."""
    return sorted(r[0] for r in df.select(column).distinct().collect() if r[0] is not None)


def run_dates(df: DataFrame, date: dt.date | None, what: str) -> list[dt.date]:
    """The run's dates: the ``--date`` given, or every date present in ``df``."""
    if date is not None:
        return [date]
    found = dates_present(df)
    if not found:
        raise InputError(f"{what} is empty: nothing to process")
    return found


def lookback_filter(dates: list[dt.date], days: int, column: str = DATE_COL) -> F.Column:
    """Rows of the run's dates plus ``days`` of history before the first one."""
    start = min(dates) - dt.timedelta(days=days)
    return (F.col(column) >= F.lit(start)) & (F.col(column) <= F.lit(max(dates)))
