"""Sliding event-time window sums whose cost is linear in the rows, whatever the key's volume.

Spark evaluates a bounded range frame (``rangeBetween(-w, 0)``) by re-aggregating
the whole frame buffer every time its lower bound moves
(``SlidingWindowFunctionFrame``), so one row costs as many updates as there are
rows in its window. That is harmless for an account with a few payments a day and
quadratic for a merchant or terminal with thousands: in the batch benchmark the
merchant windows made featurizing 5x the rows cost 15x the time.

:func:`window_sums` computes the same sums as differences of running totals,
``sum over [t + start, t + end] = C(t + end) - C(t + start - 1)`` with ``C(s)`` the
key's total over events at or before second ``s``. Each row asks for ``C`` at a
few offsets through "probe" rows unioned with the events and sorted by time; a
running total (``unboundedPreceding .. currentRow``, evaluated incrementally by
Spark) hands every probe its ``C``. One sort of ``rows x (1 + offsets)`` rows
replaces ``rows x window size`` updates. Counts, means and sample standard
deviations derive from the sums of 1, x and x² (:func:`mean_std`).

Timestamps are whole seconds (``_ts``), as in the rest of the feature code, so
``start - 1`` is exactly "strictly before ``t + start``". Ties behave as Spark's
range frames: events at the probe's second are inside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

# Probes sort after the events of their second, so C(s) includes those events.
_EVENT, _PROBE = 0, 1


def window_sums(
    df: DataFrame,
    key: str,
    ids: Sequence[str],
    values: Mapping[str, Column],
    frames: Mapping[str, tuple[int, int]],
    emit: Column | None = None,
) -> DataFrame:
    """Per distinct (``key``, ``ids``) of ``df``: ``<frame>_<value>`` = sum of ``value``
    over the same ``key``'s events with ``_ts`` in ``[_ts + start, _ts + end]``
    (seconds, typically ``start <= end <= 0``).

    ``df`` needs ``key``, ``ids`` and integer-second ``_ts``; ``ids`` must include
    ``_ts`` or anything that determines it, so rows sharing (key, ids) share their
    windows and joining the result back on ``[key, *ids]`` gives each row exactly
    one match (an event id replayed on another date is then no problem). Key and
    ids must be non-null (the input contracts require them): an equi-join back on a
    null key would find nothing.
    Returns ``key``, ``ids`` and one double column per (frame, value), for the rows
    matching ``emit`` only when it is given (a day's run over its look-back: every
    row is summed, only the day's rows are probed, which keeps the sort small).
    """
    offsets = sorted({o for start, end in frames.values() for o in (end, start - 1)})
    names = list(values)
    id_alias = {c: f"_id{i}" for i, c in enumerate(ids)}
    base = df.select(
        F.col(key).alias("_k"),
        *[F.col(c).alias(a) for c, a in id_alias.items()],
        F.col("_ts").alias("_pt"),
        *[F.coalesce(v.cast("double"), F.lit(0.0)).alias(n) for n, v in values.items()],
        (F.lit(True) if emit is None else F.coalesce(emit, F.lit(False))).alias("_emit"),
    )
    id_cols = list(id_alias.values())
    events = base.select(
        "_k",
        *[F.lit(None).cast(base.schema[a].dataType).alias(a) for a in id_cols],
        "_pt",
        F.lit(_EVENT).alias("_kind"),
        F.lit(None).cast("long").alias("_o"),
        *names,
    )
    probes = (
        base.where("_emit")
        .select("_k", *id_cols, "_pt", F.explode(F.array(*[F.lit(o) for o in offsets])).alias("_o"))
        .select(
            "_k",
            *id_cols,
            (F.col("_pt") + F.col("_o")).alias("_pt"),
            F.lit(_PROBE).alias("_kind"),
            F.col("_o").cast("long").alias("_o"),
            *[F.lit(0.0).alias(n) for n in names],
        )
    )
    running = (
        Window.partitionBy("_k")
        .orderBy("_pt", "_kind")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    totals = (
        events.unionByName(probes)
        .select("_k", *id_cols, "_kind", "_o", *[F.sum(n).over(running).alias(n) for n in names])
        .where(F.col("_kind") == _PROBE)
    )
    # Grouping by (key, ids) keeps the window's partitioning by key: no second shuffle.
    at = totals.groupBy("_k", *id_cols).agg(
        *[
            F.max(F.when(F.col("_o") == o, F.col(n))).alias(f"{n}@{i}")
            for i, o in enumerate(offsets)
            for n in names
        ]
    )
    idx = {o: i for i, o in enumerate(offsets)}
    return at.select(
        F.col("_k").alias(key),
        *[F.col(a).alias(c) for c, a in id_alias.items()],
        *[
            (F.col(f"{n}@{idx[end]}") - F.col(f"{n}@{idx[start - 1]}")).alias(f"{label}_{n}")
            for label, (start, end) in frames.items()
            for n in names
        ],
    )


def mean_std(count: Column, total: Column, sumsq: Column) -> tuple[Column, Column]:
    """Mean and sample standard deviation from n, Σx, Σx² (std 0.0 below 2 rows, like
    ``coalesce(stddev_samp, 0)``; null mean for an empty window, like ``avg``)."""
    mean = F.when(count > 0, total / count)
    # Differences of large running totals can leave a tiny negative variance.
    var = (sumsq - total * total / count) / (count - 1)
    std = F.when(count >= 2, F.sqrt(F.greatest(var, F.lit(0.0)))).otherwise(F.lit(0.0))
    return mean, std
