"""Application-log features in Spark: parse, mask, mine templates, aggregate per window.

The steps are plain ``DataFrame -> DataFrame`` functions, in pipeline order:

1. :func:`parse_bgl` / :func:`parse_generic`: raw lines -> ``event_ts, host,
   component, level, message`` (+ ``label`` for BGL, ``parse_ok`` for all). The
   first BGL token is the loghub alert label, never data: it is split off first.
2. :func:`mask_message`: numbers, hex, IPs, paths and UUIDs become ``<*>``
   (a ``regexp_replace`` chain, all in the JVM).
3. :func:`mine_templates`: Drain-style grouping of the *distinct* masked messages:
   bucket by (token count, first tokens), then merge similar messages inside each
   bucket with Drain's similarity (a grouped pandas function, because the merge is
   sequential and Spark has no native equivalent). The result is a small mapping
   ``masked -> template`` to persist and reuse.
4. :func:`assign_templates`: every line gets ``template`` and ``template_id`` from
   the mapping; a masked message the mapping has never seen is its own template.
5. :func:`log_features`: per window and entity (host, component, ...): counts per
   template, error/warning rates, never-seen-before templates, activity against
   the entity's own recent past, and minutes since its last line.

Point in time: a window row carries ``event_ts = window end`` and uses only lines
before it; "new template" and history features look strictly backwards, and empty
windows are created only *after* an entity's activity. Template ids are a function
of the line alone once the mapping is fixed, so mine on a training period, persist
the mapping, and assign with it when scoring. Mining on the scored data itself
would let later lines re-shape earlier templates.

Policies:

* **unparseable lines** have ``parse_ok = false`` and null fields; they carry no
  timestamp, so :func:`log_features` drops them and the caller counts them;
* **missing host/component** becomes ``"unknown"``, so the line still counts;
* **empty windows**: for ``max_silence`` after an entity's last line its windows
  exist with ``n_events = 0`` and all rates 0.0, which is how a silent host shows
  (``mins_since_last_event`` keeps growing); windows after the last line of the
  whole input are not produced (nothing is known about them yet);
* **new entity, no history**: history features equal the current window
  (``events_ratio_hist = 1``, no evidence of a change);
* **extreme values**: counts are kept as they are; ratios use +1 smoothing so one
  line after a silent hour is 2x, not infinity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehound.features.timeseries import duration_label, duration_seconds

WILDCARD = "<*>"
PARSED_COLUMNS = ("event_ts", "host", "component", "level", "message")

# Levels counted as errors / warnings (upper-cased). BGL uses FATAL, SEVERE and FAILURE.
ERROR_LEVELS = ("ERROR", "ERR", "FATAL", "SEVERE", "FAILURE", "CRITICAL", "CRIT", "ALERT", "EMERG")
WARN_LEVELS = ("WARN", "WARNING")

# ---------------------------------------------------------------------------
# 1. Parsing
# ---------------------------------------------------------------------------

# BGL: Label Timestamp Date Node Time NodeRepeat Type Component Level Content,
# single-space separated; the content keeps its own spaces.
_BGL_FIELDS = 10
_BGL_TIME_FRACTION = r"\.(\d{6})$"

# A common "ISO-timestamp host component[pid]: LEVEL message" layout (syslog-like,
# and what lakehound.generators.logs writes).
GENERIC_PATTERN = r"^(\S+)\s+(\S+)\s+([^\s\[:]+)(?:\[\d+\])?:?\s+([A-Za-z]+)\s+(.*)$"
GENERIC_GROUPS: Mapping[str, int] = {
    "timestamp": 1,
    "host": 2,
    "component": 3,
    "level": 4,
    "message": 5,
}


_OUTPUTS = {"label", "is_alert", "parse_ok", *PARSED_COLUMNS}


def _passthrough(df: DataFrame, line_col: str) -> list[str]:
    # Input columns named like an output (an ingest-time event_ts, say) are
    # replaced by the parsed value rather than duplicated.
    return [c for c in df.columns if c != line_col and c not in _OUTPUTS]


def parse_bgl(lines: DataFrame, line_col: str = "value") -> DataFrame:
    """Raw BGL lines (``spark.read.text``) -> parsed rows.

    Output: the input's other columns, then ``label`` (the loghub alert category,
    ``"-"`` for a normal line), ``is_alert``, ``event_ts`` (UTC, from the epoch
    field plus the microseconds of the local-time field), ``host`` (the node),
    ``component``, ``level``, ``message``, ``parse_ok``.
    """
    if line_col not in lines.columns:
        raise ValueError(f"parse_bgl: no column {line_col!r} in {lines.columns}")
    parts = F.split(F.col(line_col), " ", _BGL_FIELDS)
    epoch = F.element_at(parts, 2)
    micros = F.regexp_extract(F.element_at(parts, 5), _BGL_TIME_FRACTION, 1)
    ok = (F.size(parts) >= _BGL_FIELDS - 1) & epoch.rlike(r"^\d+$")

    def field(i: int) -> Column:
        return F.when(ok, F.element_at(parts, i))

    ts = F.timestamp_micros(
        epoch.cast("long") * 1_000_000
        + F.coalesce(F.nullif(micros, F.lit("")), F.lit("0")).cast("long")
    )
    message = F.when(F.size(parts) >= _BGL_FIELDS, F.element_at(parts, _BGL_FIELDS)).otherwise("")
    return lines.select(
        *_passthrough(lines, line_col),
        F.element_at(parts, 1).alias("label"),
        (F.element_at(parts, 1) != "-").alias("is_alert"),
        F.when(ok, ts).alias("event_ts"),
        field(4).alias("host"),
        field(8).alias("component"),
        field(9).alias("level"),
        F.when(ok, message).alias("message"),
        ok.alias("parse_ok"),
    )


def parse_generic(
    lines: DataFrame,
    pattern: str = GENERIC_PATTERN,
    groups: Mapping[str, int] | None = None,
    *,
    line_col: str = "value",
    ts_format: str | None = None,
) -> DataFrame:
    """Raw lines -> parsed rows with a configurable regex.

    ``groups`` maps ``timestamp``, ``host``, ``component``, ``level``, ``message``
    to capture-group numbers of ``pattern``; a field left out is null. The
    timestamp is read with ``ts_format`` (Spark datetime pattern) or, without one,
    as ISO 8601. ``label`` is null (generic logs carry no label); ``parse_ok`` is
    false when the line does not match or its timestamp does not parse.
    """
    groups = dict(groups or GENERIC_GROUPS)
    unknown = set(groups) - {"timestamp", *PARSED_COLUMNS}
    if unknown or "timestamp" not in groups:
        raise ValueError(
            f"parse_generic: groups must map 'timestamp' and any of {PARSED_COLUMNS[1:]}, "
            f"got {sorted(groups)}"
        )
    line = F.col(line_col)
    matches = line.rlike(pattern)

    def grp(name: str) -> Column:
        if name not in groups:
            return F.lit(None).cast("string")
        return F.when(matches, F.regexp_extract(line, pattern, groups[name]))

    raw_ts = grp("timestamp")
    ts = F.to_timestamp(raw_ts, ts_format) if ts_format else F.to_timestamp(raw_ts)
    ok = matches & ts.isNotNull()
    return lines.select(
        *_passthrough(lines, line_col),
        F.lit(None).cast("string").alias("label"),
        F.lit(None).cast("boolean").alias("is_alert"),
        F.when(ok, ts).alias("event_ts"),
        *[F.when(ok, grp(c)).alias(c) for c in PARSED_COLUMNS[1:]],
        F.coalesce(ok, F.lit(False)).alias("parse_ok"),
    )


# ---------------------------------------------------------------------------
# 2. Masking
# ---------------------------------------------------------------------------

# Order matters: the specific shapes first, so an IP is not eaten digit by digit.
MASKS: tuple[tuple[str, str], ...] = (
    ("uuid", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    ("ip", r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\d.])"),
    ("hex", r"\b0[xX][0-9a-fA-F]+\b"),
    # An absolute path starting a token (after a space, '=', ':', '(' or a quote).
    ("path", r"(?<![^\s=:(\[\"'])(?:/[^\s/,;()\[\]\"']+)+/?"),
    # A whole alphanumeric run made of hex digits with at least one decimal digit
    # (decimal numbers, bare hex like 00004e54, versions like 1.2.3).
    ("number", r"(?<![A-Za-z0-9])[-+]?[0-9a-fA-F]*[0-9][0-9a-fA-F]*(?:\.[0-9]+)*(?![A-Za-z0-9])"),
    # Whatever digits are left inside identifiers (R23-M0 -> R<*>-M<*>).
    ("digits", r"[0-9]+"),
    ("collapse", r"(?:<\*>){2,}"),
)


def mask_message(message: Column) -> Column:
    """Replace the variable parts of a log message by ``<*>`` (native regexes only)."""
    out = message
    for _, regex in MASKS:
        out = F.regexp_replace(out, regex, WILDCARD)
    return out


def _normalise_ws(col: Column) -> Column:
    return F.regexp_replace(F.trim(col), r"\s+", " ")


def template_id(template: Column) -> Column:
    """Stable 16-hex-digit id of a template text (same text -> same id in every run)."""
    return F.substring(F.sha2(template, 256), 1, 16)


# ---------------------------------------------------------------------------
# 3. Drain-style mining
# ---------------------------------------------------------------------------

TEMPLATE_SCHEMA = "masked STRING, template STRING, n_lines BIGINT"


def _drain_merge(sim_threshold: float) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Drain's leaf step for one (token count, prefix) bucket of distinct masked messages.

    Same rule as Drain (He et al., ICWS 2017) and its loghub implementation: the
    similarity of a message to a template is the fraction of positions where the
    template's token is not ``<*>`` and equals the message's; the best template
    (ties: more wildcards) absorbs the message if similarity >= ``sim_threshold``
    and positions that differ become ``<*>``. Messages are visited by first
    appearance, then text, so the result does not depend on partitioning.
    """

    def merge(pdf: pd.DataFrame) -> pd.DataFrame:
        pdf = pdf.sort_values(["first_ts", "masked"], kind="mergesort")
        templates: list[list[str]] = []
        assigned: list[int] = []
        for message in pdf["masked"].tolist():
            tokens = message.split()
            best, best_key = -1, (-1.0, -1)
            for i, tmpl in enumerate(templates):
                same = sum(a == b for a, b in zip(tmpl, tokens, strict=True) if a != WILDCARD)
                n_wild = sum(a == WILDCARD for a in tmpl)
                key = (same / len(tokens) if tokens else 1.0, n_wild)
                if key > best_key:
                    best, best_key = i, key
            if best >= 0 and best_key[0] >= sim_threshold:
                tmpl = templates[best]
                templates[best] = [
                    a if a == b else WILDCARD for a, b in zip(tmpl, tokens, strict=True)
                ]
                assigned.append(best)
            else:
                templates.append(tokens)
                assigned.append(len(templates) - 1)
        return pd.DataFrame(
            {
                "masked": pdf["masked"].to_numpy(),
                "template": [" ".join(templates[i]) for i in assigned],
                "n_lines": pdf["n_lines"].to_numpy(dtype="int64"),
            }
        )

    return merge


def mine_templates(
    logs: DataFrame,
    *,
    sim_threshold: float = 0.5,
    prefix_tokens: int = 2,
    message_col: str = "message",
    ts_col: str = "event_ts",
    per_day: bool = False,
) -> DataFrame:
    """Parsed lines -> template mapping ``(masked, template, template_id, n_lines)``.

    Defaults are Drain's published BGL setting (depth 4, i.e. 2 prefix tokens,
    similarity 0.5). Only distinct masked messages reach Python, so the cost is
    the number of message shapes, not of lines. ``per_day`` mines the shapes first
    seen on each (UTC) day only among themselves, in one pass: what mining day by
    day gives, so a day's templates never depend on later days.
    """
    if not 0.0 < sim_threshold <= 1.0:
        raise ValueError(f"mine_templates: sim_threshold must be in (0, 1], got {sim_threshold}")
    if prefix_tokens < 0:
        raise ValueError(f"mine_templates: prefix_tokens must be >= 0, got {prefix_tokens}")
    masked = logs.where(F.col(message_col).isNotNull()).select(
        mask_message(F.col(message_col)).alias("masked"), F.col(ts_col).alias("_ts")
    )
    tokens = F.split(_normalise_ws(F.col("masked")), " ")
    distinct = (
        masked.groupBy("masked")
        .agg(F.min("_ts").alias("first_ts"), F.count(F.lit(1)).alias("n_lines"))
        .withColumn("n_tokens", F.size(tokens))
        .withColumn("prefix", F.concat_ws(" ", F.slice(tokens, 1, max(prefix_tokens, 1))))
    )
    if prefix_tokens == 0:
        distinct = distinct.withColumn("prefix", F.lit(""))
    keys = ["n_tokens", "prefix"]
    if per_day:
        distinct = distinct.withColumn("_day", F.to_date("first_ts"))
        keys.append("_day")
    mapping = distinct.groupBy(*keys).applyInPandas(_drain_merge(sim_threshold), TEMPLATE_SCHEMA)
    return mapping.select(
        "masked", "template", template_id(F.col("template")).alias("template_id"), "n_lines"
    )


def assign_templates(
    logs: DataFrame,
    templates: DataFrame | None = None,
    *,
    message_col: str = "message",
) -> DataFrame:
    """Add ``masked``, ``template`` and ``template_id`` to parsed lines.

    ``templates`` is a mapping from :func:`mine_templates`; without one (or for a
    masked message it does not know) the whitespace-normalised masked message is
    the template, so an unseen message shape is a new template, never an error.
    """
    x = logs.withColumn("masked", mask_message(F.col(message_col)))
    if templates is None:
        template = _normalise_ws(F.col("masked"))
    else:
        m = templates.select(F.col("masked").alias("_m"), F.col("template").alias("_tmpl"))
        x = x.join(m, x["masked"] == m["_m"], "left").drop("_m")
        template = F.coalesce(F.col("_tmpl"), _normalise_ws(F.col("masked")))
    x = x.withColumn("template", template)
    if templates is not None:
        x = x.drop("_tmpl")
    return x.withColumn("template_id", template_id(F.col("template")))


def grouping_accuracy(
    df: DataFrame, pred_col: str = "template_id", ref_col: str = "EventId"
) -> float:
    """loghub grouping accuracy (GA): share of lines whose predicted group holds
    exactly the same lines as their reference group (Zhu et al., ICSE-SEIP 2019)."""
    total = df.count()
    if total == 0:
        raise ValueError("grouping_accuracy: no rows")
    pred = df.groupBy(pred_col).agg(
        F.count(F.lit(1)).alias("_np"),
        F.countDistinct(ref_col).alias("_k"),
        F.min(ref_col).alias("_ref"),
    )
    ref = df.groupBy(ref_col).agg(F.count(F.lit(1)).alias("_nr"))
    good = (
        pred.where(F.col("_k") == 1)
        .join(ref, pred["_ref"] == ref[ref_col])
        .where(F.col("_np") == F.col("_nr"))
        .agg(F.sum("_np"))
        .first()
    )
    return float((good[0] if good and good[0] is not None else 0) / total)


def parsing_accuracy(
    df: DataFrame, pred_col: str = "template", ref_col: str = "EventTemplate"
) -> float:
    """loghub-2.0 parsing accuracy (PA): share of lines whose template text equals the
    reference template (whitespace-normalised, runs of ``<*>`` collapsed)."""

    def norm(c: str) -> Column:
        return F.regexp_replace(_normalise_ws(F.col(c)), r"(?:<\*>)+", WILDCARD)

    row = df.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum((norm(pred_col) == norm(ref_col)).cast("long")).alias("ok"),
    ).first()
    if row is None or not row["n"]:
        raise ValueError("parsing_accuracy: no rows")
    return float((row["ok"] or 0) / row["n"])


# ---------------------------------------------------------------------------
# 5. Window features
# ---------------------------------------------------------------------------

LOG_WINDOW = "5 minutes"
HISTORY_WINDOWS = 12
MAX_SILENCE = "1 hour"
NOVELTY_HORIZON = "7 days"

CatalogEntry = tuple[str, str, str, str]  # (name, description, window, dtype)


def feature_catalog(
    window: str = LOG_WINDOW,
    history_windows: int = HISTORY_WINDOWS,
    novelty_horizon: str = NOVELTY_HORIZON,
) -> list[CatalogEntry]:
    """Every feature column :func:`log_features` writes, in order."""
    w = duration_label(duration_seconds(window))
    hist = duration_label(history_windows * duration_seconds(window))
    nov = duration_label(duration_seconds(novelty_horizon))
    return [
        ("n_events", f"lines of the entity in the {w} window", w, "double"),
        ("n_errors", f"lines at an error level ({'/'.join(ERROR_LEVELS[:5])}, ...)", w, "double"),
        ("n_warnings", "lines at WARN/WARNING level", w, "double"),
        ("error_rate", "n_errors / n_events (0.0 for an empty window)", w, "double"),
        ("warn_rate", "n_warnings / n_events (0.0 for an empty window)", w, "double"),
        ("n_templates", "distinct templates in the window", w, "double"),
        (
            "n_new_templates",
            f"templates in the window never seen (any entity) in the previous {nov}",
            nov,
            "double",
        ),
        (
            "top_template_share",
            "share of the window's lines in its most frequent template",
            w,
            "double",
        ),
        ("template_entropy", "Shannon entropy (nats) of the window's template counts", w, "double"),
        (
            "events_mean_hist",
            f"mean lines per window over the entity's previous {hist} (n_events if no history)",
            hist,
            "double",
        ),
        (
            "events_ratio_hist",
            f"(n_events + 1) / (events_mean_hist + 1) over {hist}",
            hist,
            "double",
        ),
        (
            "errors_ratio_hist",
            f"(n_errors + 1) / (mean errors per window over the previous {hist} + 1)",
            hist,
            "double",
        ),
        (
            "mins_since_last_event",
            "minutes from the entity's last line to the window end",
            "history",
            "double",
        ),
        ("template_counts", "map template_id -> lines in the window", w, "map<string,bigint>"),
    ]


def feature_names(**kwargs: object) -> list[str]:
    return [name for name, *_ in feature_catalog(**kwargs)]  # type: ignore[arg-type]


def _prepare(
    parsed: DataFrame, window_s: int, entity: Sequence[str], novelty_horizon_s: int
) -> DataFrame:
    if "template_id" not in parsed.columns:
        parsed = assign_templates(parsed)
    missing = [c for c in ("event_ts", "level", "template_id", *entity) if c not in parsed.columns]
    if missing:
        raise ValueError(f"log_features: input lacks column(s) {missing}; has {parsed.columns}")
    level = F.upper(F.trim(F.col("level")))
    entity_id = F.concat_ws(
        "|", *[F.coalesce(F.col(c).cast("string"), F.lit("unknown")) for c in entity]
    )
    x = parsed.where(F.col("event_ts").isNotNull()).select(
        entity_id.alias("entity_id"),
        "event_ts",
        "template_id",
        F.unix_micros("event_ts").alias("_us"),
        level.isin(*ERROR_LEVELS).cast("long").alias("_err"),
        level.isin(*WARN_LEVELS).cast("long").alias("_warn"),
    )
    x = x.withColumn(
        "_ws", F.floor(F.col("_us") / F.lit(window_s * 1_000_000)).cast("long") * window_s
    )
    # New = no line of this template (any entity) in the horizon strictly before this one.
    before = (
        Window.partitionBy("template_id")
        .orderBy("_us")
        .rangeBetween(-novelty_horizon_s * 1_000_000, -1)
    )
    return x.withColumn("_new", (F.count(F.lit(1)).over(before) == 0).cast("long"))


def log_features(
    parsed: DataFrame,
    window: str = LOG_WINDOW,
    *,
    entity: Sequence[str] = ("host",),
    history_windows: int = HISTORY_WINDOWS,
    max_silence: str = MAX_SILENCE,
    novelty_horizon: str = NOVELTY_HORIZON,
) -> DataFrame:
    """Parsed lines -> one row per (entity, tumbling window).

    ``parsed`` needs ``event_ts``, ``level``, the ``entity`` columns and ideally
    ``template_id`` (from :func:`assign_templates`; computed without a mapping if
    absent). It must hold the run's dates plus the look-back of the longest
    horizon (``novelty_horizon``); the caller filters the result to the run's
    dates. Output: ``event_id``, ``entity_id`` (entity values joined by ``|``),
    ``window_start``, ``event_ts`` (window end), ``event_date`` (of the window
    start), then :func:`feature_names` in order.
    """
    if not entity:
        raise ValueError("log_features: entity must name at least one column")
    if history_windows < 1:
        raise ValueError(f"log_features: history_windows must be >= 1, got {history_windows}")
    w_s = duration_seconds(window)
    silence_steps = duration_seconds(max_silence) // w_s
    x = _prepare(parsed, w_s, entity, duration_seconds(novelty_horizon))

    per_t = x.groupBy("entity_id", "_ws", "template_id").agg(
        F.count(F.lit(1)).alias("_c"),
        F.sum("_err").alias("_e"),
        F.sum("_warn").alias("_wn"),
        F.max("_new").alias("_new"),
        F.max("_us").alias("_last_us"),
    )
    per_w = per_t.groupBy("entity_id", "_ws").agg(
        F.sum("_c").alias("n_events"),
        F.sum("_e").alias("n_errors"),
        F.sum("_wn").alias("n_warnings"),
        F.count(F.lit(1)).alias("n_templates"),
        F.sum("_new").alias("n_new_templates"),
        F.max("_c").alias("_top"),
        F.sum(F.col("_c") * F.log(F.col("_c"))).alias("_clogc"),
        F.max("_last_us").alias("_last_us"),
        F.map_from_entries(F.array_sort(F.collect_list(F.struct("template_id", "_c")))).alias(
            "template_counts"
        ),
    )
    # Empty windows for up to max_silence after each active one, never past the
    # input's last window (what comes after it is not known yet).
    last_ws = per_w.agg(F.max("_ws").alias("_cap"))
    grid = (
        per_w.select(
            "entity_id",
            F.explode(
                F.sequence(
                    F.col("_ws"), F.col("_ws") + silence_steps * w_s, F.lit(w_s).cast("long")
                )
            ).alias("_ws"),
        )
        .crossJoin(F.broadcast(last_ws))
        .where(F.col("_ws") <= F.col("_cap"))
        .select("entity_id", "_ws")
        .distinct()
    )
    g = grid.join(per_w, ["entity_id", "_ws"], "left")
    counts = [
        "n_events",
        "n_errors",
        "n_warnings",
        "n_templates",
        "n_new_templates",
        "_top",
        "_clogc",
    ]
    g = g.select(
        "entity_id",
        "_ws",
        "_last_us",
        "template_counts",
        *[F.coalesce(F.col(c), F.lit(0)).cast("double").alias(c) for c in counts],
    )

    by_e = Window.partitionBy("entity_id").orderBy("_ws")
    upto = by_e.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    hist = by_e.rangeBetween(-history_windows * w_s, -w_s)
    n = F.col("n_events")
    # Windows of history the entity has had in this input (capped at the horizon).
    n_hist = F.least(F.lit(history_windows), (F.col("_ws") - F.min("_ws").over(upto)) / w_s)
    ev_mean = F.when(n_hist > 0, F.coalesce(F.sum(n).over(hist), F.lit(0.0)) / n_hist).otherwise(n)
    err_mean = F.when(
        n_hist > 0, F.coalesce(F.sum("n_errors").over(hist), F.lit(0.0)) / n_hist
    ).otherwise(F.col("n_errors"))
    end_us = (F.col("_ws") + w_s) * 1_000_000
    last_us = F.max("_last_us").over(upto)

    def rate(c: str) -> Column:
        return F.when(n > 0, F.col(c) / n).otherwise(F.lit(0.0))

    g = g.select(
        "*",
        rate("n_errors").alias("error_rate"),
        rate("n_warnings").alias("warn_rate"),
        rate("_top").alias("top_template_share"),
        F.when(n > 0, F.log(n) - F.col("_clogc") / n)
        .otherwise(F.lit(0.0))
        .alias("template_entropy"),
        ev_mean.alias("events_mean_hist"),
        ((n + 1.0) / (ev_mean + 1.0)).alias("events_ratio_hist"),
        ((F.col("n_errors") + 1.0) / (err_mean + 1.0)).alias("errors_ratio_hist"),
        ((end_us - last_us) / 60_000_000.0).alias("mins_since_last_event"),
        F.coalesce(F.col("template_counts"), F.create_map().cast("map<string,bigint>")).alias(
            "_tc"
        ),
    )
    g = g.drop("template_counts").withColumnRenamed("_tc", "template_counts")
    start = F.timestamp_seconds(F.col("_ws"))
    names = feature_names(
        window=window, history_windows=history_windows, novelty_horizon=novelty_horizon
    )
    return g.select(
        F.format_string("%s@%s", "entity_id", F.date_format(start, "yyyy-MM-dd'T'HH:mm:ss")).alias(
            "event_id"
        ),
        "entity_id",
        start.alias("window_start"),
        F.timestamp_seconds(F.col("_ws") + w_s).alias("event_ts"),
        F.to_date(start).alias("event_date"),
        *names,
    )


def template_counts(
    logs: DataFrame, window: str = LOG_WINDOW, *, entity: Sequence[str] = ("host",)
) -> DataFrame:
    """Long form of the per-window template counts: ``(entity_id, window_start,
    event_ts, event_date, template_id, template, n_lines)``; only non-zero counts."""
    w_s = duration_seconds(window)
    if "template_id" not in logs.columns:
        logs = assign_templates(logs)
    entity_id = F.concat_ws(
        "|", *[F.coalesce(F.col(c).cast("string"), F.lit("unknown")) for c in entity]
    )
    ws = F.floor(F.unix_micros("event_ts") / F.lit(w_s * 1_000_000)).cast("long") * w_s
    out = (
        logs.where(F.col("event_ts").isNotNull())
        .groupBy(entity_id.alias("entity_id"), ws.alias("_ws"), "template_id")
        .agg(F.min("template").alias("template"), F.count(F.lit(1)).alias("n_lines"))
    )
    start = F.timestamp_seconds(F.col("_ws"))
    return out.select(
        "entity_id",
        start.alias("window_start"),
        F.timestamp_seconds(F.col("_ws") + w_s).alias("event_ts"),
        F.to_date(start).alias("event_date"),
        "template_id",
        "template",
        "n_lines",
    )
