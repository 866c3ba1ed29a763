"""Per-format adapters: line parsers for ``text`` inputs and derived columns.

Some real feeds do not carry every contract column as a column: a BGL log line is
one string to be split into fields, and a NAB series' identity is its file name.
Adapters turn such input into the contract's string columns, as Spark expressions
(no Python UDF, so parsing costs no serialisation round trip).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from schemas.base import Contract

UNPARSED = "_unparsed"
SOURCE = "_source_file"

# BGL: "<label> <epoch> <yyyy.mm.dd> <node> <yyyy-mm-dd-hh.mm.ss.ffffff> <node> <type>
# <component> <level> <content...>". The first token is the label ("-" = normal);
# the contract keeps it as a separate column so no parser reads it as message text.
BGL_LINE = (
    r"^(\S+) (\d+) (\d{4}\.\d{2}\.\d{2}) (\S+) "
    r"(\d{4}-\d{2}-\d{2}-\d{2}\.\d{2}\.\d{2}\.\d{6}) (\S+) (\S+) (\S+) (\S+)(?: (.*))?$"
)
_BGL_GROUPS = (
    "alert_label",
    "epoch_s",
    "log_date",
    "node",
    "_ts_text",
    "node_repeat",
    "msg_type",
    "component",
    "level",
    "content",
)


def parse_lines(contract: Contract, lines: DataFrame) -> DataFrame:
    """Split raw text lines (column ``value``) into the contract's string columns."""
    if contract.parser == "bgl":
        matched = F.regexp_like(F.col("value"), F.lit(BGL_LINE))
        cols = {
            name: F.when(matched, F.regexp_extract("value", BGL_LINE, i + 1))
            for i, name in enumerate(_BGL_GROUPS)
        }
        # The text timestamp is the machine's local time (PDT in BGL); the epoch field
        # is UTC. event_ts = epoch seconds + the text's microseconds, as a UTC string
        # (the session zone is UTC), the same instant the feature parser uses.
        micros = F.regexp_extract(cols.pop("_ts_text"), r"\.(\d{6})$", 1)
        ts = F.when(
            matched,
            F.timestamp_micros(
                F.col("_epoch_raw").cast("long") * 1_000_000 + micros.cast("long")
            ).cast("string"),
        )
        return lines.withColumn("_epoch_raw", F.regexp_extract("value", BGL_LINE, 2)).select(
            "value",
            F.col("value").alias("line"),
            *[c.alias(n) for n, c in cols.items()],
            ts.alias("event_ts"),
            (~matched).alias(UNPARSED),
        )
    raise ValueError(f"contract {contract.name}: unknown line parser {contract.parser!r}")


def derive(contract: Contract, df: DataFrame) -> DataFrame:
    """Add the contract's derived columns (as strings) from what the reader knows."""
    for spec in contract.fields:
        if not spec.derived:
            continue
        if spec.name == "series_id":
            # NAB: <category>/<name>.csv identifies the series (the key of windows.json).
            df = df.withColumn(
                "series_id", F.regexp_extract(F.col(SOURCE), r"([^/]+/[^/]+\.csv)$", 1)
            )
        elif spec.name == "event_ts" and "timestamp" in df.columns:
            # NAB's time column is `timestamp`; downstream code reads `event_ts`.
            df = df.withColumn("event_ts", F.col("timestamp"))
        else:
            raise ValueError(f"contract {contract.name}: no adapter derives {spec.name!r}")
    return df
