"""Log sessions as a window kind: lines grouped by a key found in each line.

A session is every line carrying one session key (HDFS: the block id
``blk_...``; an SSH / auth log: the connection's pid or the user), in time order.
Beside the time windows of :mod:`lakehound.features.logs` this gives, per session:
the sequence of its template ids (what DeepLog reads), the template count map
(what PCA / Invariants Mining read, via ``udfs.detectors.logs.count_matrix``),
its length, duration, and the share of its lines whose template is new or rare.

Pipeline: parsed lines (``parse_hdfs`` or ``logs.parse_generic``) ->
``logs.assign_templates`` -> :func:`with_session_keys` -> :func:`session_features`.

Policies:

* a line with **no session key** belongs to no session: it is kept out of the
  session rows and counted by :func:`sessionless_lines` (nothing is dropped
  silently); a line naming **several keys** (an HDFS replication line names a
  few blocks) counts once in each of their sessions;
* **order** inside a session: event time, then the line's position in the input
  (``line_col``), so lines of one second keep their file order;
* **new / rare**: a line's template is new when no earlier line of the input had
  it, rare when fewer than ``rare_min_count`` earlier lines had it: both look only
  backwards, like the window features;
* a session's row carries ``event_ts`` = its last line's time: scored once its
  lines are in; a session still open at the end of the input is scored with what
  it has so far.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehound.features import logs as L
from lakehound.features.timeseries import duration_seconds

# HDFS (loghub HDFS_v1): "081109 203615 148 INFO dfs.DataNode$PacketResponder: message".
HDFS_PATTERN = r"^(\d{6} \d{6}) (\d+) ([A-Z]+) ([^:\s]+): (.*)$"
HDFS_GROUPS: Mapping[str, int] = {"timestamp": 1, "level": 3, "component": 4, "message": 5}
HDFS_TS_FORMAT = "yyMMdd HHmmss"
HDFS_SESSION_KEY = r"(blk_-?\d+)"

RARE_MIN_COUNT = 10


@dataclass(frozen=True)
class SessionSpec:
    """How lines become sessions: ``key_pattern`` (a regex; its group 1, or the whole
    match without groups, is the key) searched in ``key_column``."""

    key_pattern: str = HDFS_SESSION_KEY
    key_column: str = "message"
    rare_min_count: int = RARE_MIN_COUNT

    def __post_init__(self) -> None:
        try:
            compiled = re.compile(self.key_pattern)
        except re.error as exc:
            raise ValueError(f"sessions.key_pattern {self.key_pattern!r}: {exc}") from None
        if compiled.groups > 1:
            raise ValueError(
                f"sessions.key_pattern {self.key_pattern!r} must have at most one group "
                f"(the key), has {compiled.groups}"
            )
        if self.rare_min_count < 1:
            raise ValueError(f"sessions.rare_min_count must be >= 1, got {self.rare_min_count}")

    @property
    def group(self) -> int:
        return 1 if re.compile(self.key_pattern).groups else 0


def parse_hdfs(lines: DataFrame, line_col: str = "value") -> DataFrame:
    """Raw HDFS lines -> ``logs.parse_generic`` output (no host field in HDFS)."""
    return L.parse_generic(
        lines, HDFS_PATTERN, HDFS_GROUPS, line_col=line_col, ts_format=HDFS_TS_FORMAT
    )


def with_session_keys(
    parsed: DataFrame, spec: SessionSpec = SessionSpec(), *, line_col: str = "line_no"
) -> DataFrame:
    """Add ``session_id`` (one row per key a line names; null when it names none)
    and, if absent, ``line_col`` (the line's position, for a stable order)."""
    if spec.key_column not in parsed.columns:
        raise ValueError(
            f"with_session_keys: no column {spec.key_column!r} (sessions.key_column) in {parsed.columns}"
        )
    if line_col not in parsed.columns:
        parsed = parsed.withColumn(line_col, F.monotonically_increasing_id())
    keys = F.array_distinct(
        F.regexp_extract_all(
            F.coalesce(F.col(spec.key_column), F.lit("")), F.lit(spec.key_pattern), spec.group
        )
    )
    return parsed.withColumn("session_id", F.explode_outer(keys))


def with_window_sessions(
    parsed: DataFrame,
    window: str = L.LOG_WINDOW,
    *,
    entity: tuple[str, ...] = ("component",),
    line_col: str = "line_no",
) -> DataFrame:
    """Time windows as sessions: ``session_id`` = entity values + window start
    (``"KERNEL@2005-06-03T15:40:00"``), so window rows reach the session detectors."""
    missing = [c for c in (*entity, "event_ts") if c not in parsed.columns]
    if missing:
        raise ValueError(f"with_window_sessions: input lacks {missing}; has {parsed.columns}")
    if line_col not in parsed.columns:
        parsed = parsed.withColumn(line_col, F.monotonically_increasing_id())
    w_s = duration_seconds(window)
    start = F.timestamp_seconds(F.floor(F.unix_seconds("event_ts") / w_s) * w_s)
    ent = F.concat_ws("|", *[F.coalesce(F.col(c).cast("string"), F.lit("unknown")) for c in entity])
    return parsed.withColumn(
        "session_id",
        F.when(
            F.col("event_ts").isNotNull(),
            F.format_string("%s@%s", ent, F.date_format(start, "yyyy-MM-dd'T'HH:mm:ss")),
        ),
    )


def sessionless_lines(keyed: DataFrame) -> int:
    """Lines that belong to no session (no key, or no timestamp)."""
    return keyed.where(F.col("session_id").isNull() | F.col("event_ts").isNull()).count()


def _backward_counts(keyed: DataFrame, line_col: str) -> DataFrame:
    # Earlier lines of the same template anywhere in the input (each line once,
    # however many sessions it belongs to).
    lines = keyed.select(line_col, "template_id", "event_ts").distinct()
    before = (
        Window.partitionBy("template_id")
        .orderBy("event_ts", line_col)
        .rowsBetween(Window.unboundedPreceding, -1)
    )
    return lines.select(line_col, F.count(F.lit(1)).over(before).alias("_prior"))


def session_features(
    keyed: DataFrame, spec: SessionSpec = SessionSpec(), *, line_col: str = "line_no"
) -> DataFrame:
    """Lines with ``session_id`` and ``template_id`` -> one row per session.

    Output: ``event_id`` (= ``session_id``), ``session_id``, ``window_start`` (first
    line), ``event_ts`` (last line), ``event_date``, ``template_seq`` (template ids in
    order), then :func:`session_feature_names` in order.
    """
    missing = [
        c for c in ("session_id", "template_id", "event_ts", line_col) if c not in keyed.columns
    ]
    if missing:
        raise ValueError(f"session_features: input lacks {missing}; has {keyed.columns}")
    x = keyed.where(F.col("session_id").isNotNull() & F.col("event_ts").isNotNull())
    prior = _backward_counts(x, line_col)
    x = x.join(prior, line_col)
    level = F.upper(F.trim(F.coalesce(F.col("level"), F.lit(""))))
    is_err = level.isin(*L.ERROR_LEVELS) if "level" in x.columns else F.lit(False)
    x = x.select(
        "session_id",
        "event_ts",
        "template_id",
        line_col,
        is_err.cast("long").alias("_err"),
        (F.col("_prior") == 0).cast("long").alias("_new"),
        (F.col("_prior") < spec.rare_min_count).cast("long").alias("_rare"),
    )
    ordered = F.array_sort(F.collect_list(F.struct("event_ts", line_col, "template_id")))
    per = x.groupBy("session_id").agg(
        F.min("event_ts").alias("window_start"),
        F.max("event_ts").alias("event_ts"),
        ordered.alias("_lines"),
        F.count(F.lit(1)).alias("_n"),
        F.sum("_err").alias("_e"),
        F.sum("_new").alias("_nw"),
        F.sum("_rare").alias("_rr"),
        F.countDistinct("template_id").alias("_k"),
    )
    counts = (
        x.groupBy("session_id", "template_id")
        .agg(F.count(F.lit(1)).alias("_c"))
        .groupBy("session_id")
        .agg(
            F.map_from_entries(F.array_sort(F.collect_list(F.struct("template_id", "_c")))).alias(
                "template_counts"
            )
        )
    )
    per = per.join(counts, "session_id")
    seq = F.transform(F.col("_lines"), lambda s: s["template_id"])
    n = F.col("_n").cast("double")

    def share(c: str) -> Column:
        return F.col(c).cast("double") / n

    return per.select(
        F.col("session_id").alias("event_id"),
        "session_id",
        "window_start",
        "event_ts",
        F.to_date("window_start").alias("event_date"),
        seq.alias("template_seq"),
        n.alias("n_events"),
        (F.unix_micros("event_ts") - F.unix_micros("window_start")).cast("double").alias("_d"),
        F.col("_k").cast("double").alias("n_templates"),
        F.col("_e").cast("double").alias("n_errors"),
        share("_nw").alias("new_template_share"),
        share("_rr").alias("rare_template_share"),
        "template_counts",
    ).select(
        "event_id",
        "session_id",
        "window_start",
        "event_ts",
        "event_date",
        "template_seq",
        "n_events",
        (F.col("_d") / 1e6).alias("duration_s"),
        "n_templates",
        "n_errors",
        "new_template_share",
        "rare_template_share",
        "template_counts",
    )


SESSION_CATALOG: list[tuple[str, str, str]] = [
    ("n_events", "lines in the session (its length)", "double"),
    ("duration_s", "seconds from the session's first line to its last", "double"),
    ("n_templates", "distinct templates in the session", "double"),
    ("n_errors", "lines at an error level", "double"),
    (
        "new_template_share",
        "share of the session's lines whose template no earlier line of the input had",
        "double",
    ),
    (
        "rare_template_share",
        "share of the session's lines whose template fewer than rare_min_count earlier lines had",
        "double",
    ),
    ("template_counts", "map template_id -> lines of the session", "map<string,bigint>"),
]


def session_feature_names() -> list[str]:
    return [name for name, *_ in SESSION_CATALOG]


def collect_sequences(sessions: DataFrame) -> tuple[list[str], list[list[str]]]:
    """Session ids and template-id sequences to the driver, sorted by session id
    (for the numpy detectors; a session table is small next to its lines)."""
    rows = sessions.select("session_id", "template_seq").orderBy("session_id").collect()
    return [r["session_id"] for r in rows], [list(r["template_seq"]) for r in rows]
