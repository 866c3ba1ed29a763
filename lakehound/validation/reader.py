"""Read raw input with the contract's columns while losing nothing.

``lakehound.io.read_input`` is the happy-path reader: it applies the contract schema
and Spark silently turns an unparseable value into null. Validation needs the
opposite, so this reader:

* reads every CSV/JSON value as a *string* (types are checked later, by rule, so a
  bad value becomes the reason ``invalid_type:<col>`` instead of a silent null);
* keeps malformed records whole in PERMISSIVE mode with a corrupt-record column;
* checks each CSV file's header against the contract (columns missing, unknown or
  reordered: Spark's positional read would otherwise shift values between columns)
  and reads each header layout with its own positional schema;
* returns the same frame shape for every format: the contract's source columns,
  ``_raw_record`` (the record as text), ``_malformed`` and ``_source_file``.

Only headers are read on the driver (one line per file, through the Hadoop
FileSystem API, so ``s3a://`` works too); rows never leave the executors.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from lakehound import io
from lakehound.config import InputSettings
from lakehound.errors import InputError
from lakehound.validation import adapters
from schemas.base import Contract

log = logging.getLogger("lakehound.validation")

CORRUPT = "_corrupt_record"
RAW = "_raw_record"
MALFORMED = "_malformed"
SOURCE = "_source_file"
BOM = "\ufeff"


@dataclass(frozen=True)
class SchemaDrift:
    """How one input file's columns differ from the contract."""

    source: str
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing {list(self.missing)}")
        if self.extra:
            parts.append(f"unknown {list(self.extra)}")
        return f"{self.source}: " + ", ".join(parts)


@dataclass
class RawInput:
    """The raw rows plus what was learned about the files while reading them."""

    df: DataFrame
    drift: list[SchemaDrift] = field(default_factory=list)
    files: int = 0


def _jvm_fs(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    assert jvm is not None  # a live session always has a gateway
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    jpath = jvm.org.apache.hadoop.fs.Path(path)
    return jpath.getFileSystem(conf), jvm


def list_files(spark: SparkSession, paths: Sequence[str]) -> list[str]:
    """Data files under ``paths``, recursively, skipping ``_SUCCESS``/``.crc`` style files."""
    out: list[str] = []
    for path in paths:
        fs, jvm = _jvm_fs(spark, path)
        jpath = jvm.org.apache.hadoop.fs.Path(path)
        if not fs.exists(jpath):
            raise InputError(f"input path does not exist: {path}")
        it = fs.listFiles(jpath, True)
        while it.hasNext():
            status = it.next()
            p = status.getPath()
            # Hidden and marker files are what Spark itself skips.
            if any(part.startswith(("_", ".")) for part in _relative_parts(str(p), path)):
                continue
            out.append(str(p.toString()))
    return sorted(out)


def broken_links(paths: Sequence[str]) -> list[str]:
    """Symlinks under local ``paths`` whose target is missing.

    Hadoop's listing skips them without a word, so a file that was meant to be read
    would vanish from the run unnoticed; each one is named in a warning instead.
    """
    out: list[str] = []
    for path in paths:
        local = path.removeprefix("file:")
        if "://" in local or not os.path.isdir(local):
            continue
        for folder, dirs, files in os.walk(local):
            for name in [*dirs, *files]:
                full = os.path.join(folder, name)
                if os.path.islink(full) and not os.path.exists(full):
                    out.append(full)
    return sorted(out)


def _warn_skipped(links: list[str]) -> None:
    for link in links:
        log.warning(
            "skipping broken symlink %s -> %s (target missing): its rows are not read",
            link, os.readlink(link),
        )  # fmt: skip


def _relative_parts(full: str, root: str) -> list[str]:
    rel = full.split(root.rstrip("/").split("://")[-1], 1)[-1]
    # event_date=... directories are layout, not hidden.
    return [p for p in rel.split("/") if p]


def first_line(spark: SparkSession, file: str) -> str | None:
    """The first line of a (possibly compressed) text file, decoded as UTF-8."""
    fs, jvm = _jvm_fs(spark, file)
    jpath = jvm.org.apache.hadoop.fs.Path(file)
    stream = fs.open(jpath)
    try:
        codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(
            spark.sparkContext._jsc.hadoopConfiguration()
        ).getCodec(jpath)
        raw = codec.createInputStream(stream) if codec is not None else stream
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(raw, "UTF-8"))
        line = reader.readLine()
        return None if line is None else str(line)
    finally:
        stream.close()


def parse_header(line: str, sep: str) -> tuple[str, ...]:
    """Column names of a CSV header line; a UTF-8 byte-order mark is not part of a name."""
    line = line.removeprefix(BOM)
    row = next(csv.reader([line], delimiter=sep), [])
    return tuple(name.strip() for name in row)


def _positional_schema(header: tuple[str, ...], known: Sequence[str]) -> StructType:
    """One string field per header position: a contract column keeps its name (the
    first time it appears), every other position is ``_extra_<i>``. A header name is
    never used as a Spark column name otherwise: ``note.v2`` or the braces and quotes
    of a JSON line read as a header would be parsed as column paths."""
    taken: set[str] = set()
    fields = []
    for i, name in enumerate(header):
        unique = name if name in known and name not in taken else f"_extra_{i}"
        taken.add(unique)
        fields.append(StructField(unique, StringType(), True))
    fields.append(StructField(CORRUPT, StringType(), True))
    return StructType(fields)


def quoted(name: str) -> str:
    """A column name as Spark SQL reads it literally (dots, spaces and all)."""
    return "`" + name.replace("`", "``") + "`"


def _finish(df: DataFrame, contract: Contract, raw: Column, malformed: Column) -> DataFrame:
    cols = [
        F.col(c) if c in df.columns else F.lit(None).cast("string").alias(c)
        for c in contract.source_columns
    ]
    return df.select(
        *cols,
        raw.alias(RAW),
        malformed.alias(MALFORMED),
        F.input_file_name().alias(SOURCE),
    )


def _read_csv(
    spark: SparkSession, settings: InputSettings, contract: Contract, files: list[str]
) -> RawInput:
    options = dict(settings.options)
    sep = options.get("sep", options.get("delimiter", ","))
    layouts: dict[tuple[str, ...], list[str]] = {}
    drift: list[SchemaDrift] = []
    expected = contract.source_columns
    for file in files:
        line = first_line(spark, file)
        if line is None or not line.strip(BOM).strip():
            continue  # an empty file holds no records
        header = parse_header(line, sep)
        missing = tuple(c for c in expected if c not in header)
        extra = tuple(c for c in header if c not in expected)
        if missing or extra:
            drift.append(SchemaDrift(file, missing, extra))
        layouts.setdefault(header, []).append(file)
    frames: list[DataFrame] = []
    for header, group in layouts.items():
        schema = _positional_schema(header, expected)
        data_cols = [f.name for f in schema.fields if f.name != CORRUPT]
        df = (
            spark.read.options(**options)
            .option("header", "true")
            # Positions come from this group's own header, so Spark must not re-check names.
            .option("enforceSchema", "true")
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT)
            .schema(schema)
            .csv(group)
        )
        # A well-formed row is re-rendered from its tokens (quoting may differ from
        # the file); a malformed one keeps the exact text Spark could not parse.
        raw = F.coalesce(
            F.col(CORRUPT),
            F.to_csv(F.struct(*[F.col(c) for c in data_cols]), {"sep": sep}),
        )
        frames.append(_finish(df, contract, raw, F.col(CORRUPT).isNotNull()))
    return RawInput(_union(spark, contract, frames), drift, len(files))


def _read_json(
    spark: SparkSession, settings: InputSettings, contract: Contract, files: list[str]
) -> RawInput:
    schema = StructType(
        [StructField(c, StringType(), True) for c in contract.source_columns]
        + [StructField(CORRUPT, StringType(), True)]
    )
    if not files:
        return RawInput(_union(spark, contract, []), [], 0)
    df = (
        spark.read.options(**settings.options)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT)
        .schema(schema)
        .json(files)
    )
    raw = F.coalesce(F.col(CORRUPT), F.to_json(F.struct(*contract.source_columns)))
    return RawInput(_finish(df, contract, raw, F.col(CORRUPT).isNotNull()), [], len(files))


def _read_native(
    spark: SparkSession,
    settings: InputSettings,
    contract: Contract,
    paths: list[str],
) -> RawInput:
    # Parquet and Delta carry their own schema: read it as written (no inference
    # happens) and compare it with the contract instead of forcing a cast on read.
    reader = spark.read.options(**settings.options)
    if settings.format == "delta":
        df = reader.format("delta").load(paths[0])
    else:
        if settings.partitioned_by_date:
            reader = reader.option("recursiveFileLookup", "true")
        df = reader.parquet(*paths)
    df = _nanos_to_timestamps(df, contract, paths)
    expected = contract.source_columns
    missing = tuple(c for c in expected if c not in df.columns)
    extra = tuple(c for c in df.columns if c not in expected)
    drift = [SchemaDrift(",".join(paths), missing, extra)] if (missing or extra) else []
    raw = F.to_json(F.struct(*[F.col(quoted(c)) for c in df.columns]))
    return RawInput(_finish(df, contract, raw, F.lit(False)), drift, len(paths))


def nanos_columns(paths: Sequence[str]) -> set[str]:
    """Columns stored as Parquet ``TIMESTAMP(NANOS)`` (pandas' default) in the first
    local Parquet file under ``paths``; empty for remote paths."""
    import pyarrow.parquet as pq

    for path in paths:
        local = path.removeprefix("file:")
        if "://" in local or not os.path.exists(local):
            continue
        files = [local] if os.path.isfile(local) else []
        for folder, dirs, names in os.walk(local):
            dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
            files += sorted(
                os.path.join(folder, n) for n in names
                if n.endswith(".parquet") and not n.startswith(("_", "."))
            )  # fmt: skip
            if files:
                break
        if files:
            schema = pq.read_schema(files[0])
            return {
                f.name for f in schema
                if str(f.type).startswith("timestamp[ns")
            }  # fmt: skip
    return set()


def _nanos_to_timestamps(df: DataFrame, contract: Contract, paths: Sequence[str]) -> DataFrame:
    """Spark cannot read Parquet nanosecond timestamps; the session reads them as
    nanoseconds since the epoch (``spark.sql.legacy.parquet.nanosAsLong``), and the
    contract's timestamp columns stored that way become timestamps again here
    (microsecond precision, Spark's)."""
    wanted = {
        s.name for s in contract.fields
        if isinstance(s.dtype, TimestampType | TimestampNTZType)
        and s.name in df.columns
        and isinstance(df.schema[s.name].dataType, LongType)
    }  # fmt: skip
    nanos = wanted & nanos_columns(paths) if wanted else set()
    return df.withColumns(
        {c: F.expr(f"timestamp_micros(div({quoted(c)}, 1000))") for c in sorted(nanos)}
    )


def _read_text(
    spark: SparkSession, settings: InputSettings, contract: Contract, files: list[str]
) -> RawInput:
    if not contract.parser:
        raise InputError(f"contract {contract.name} has no line parser for input.format text")
    if not files:
        return RawInput(_union(spark, contract, []), [], 0)
    lines = spark.read.options(**settings.options).text(files)
    # Blank lines are not records (and carry nothing to lose).
    lines = lines.where(F.length(F.trim(F.col("value"))) > 0)
    parsed = adapters.parse_lines(contract, lines)
    return RawInput(
        _finish(parsed, contract, F.col("value"), F.col(adapters.UNPARSED)),
        [],
        len(files),
    )


def _union(spark: SparkSession, contract: Contract, frames: list[DataFrame]) -> DataFrame:
    if not frames:
        schema = StructType(
            [StructField(c, StringType(), True) for c in contract.source_columns]
            + [
                StructField(RAW, StringType(), True),
                StructField(MALFORMED, StringType(), True),
                StructField(SOURCE, StringType(), True),
            ]
        )
        empty = spark.createDataFrame([], schema)
        return empty.withColumn(MALFORMED, F.col(MALFORMED).cast("boolean"))
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def read_raw(
    spark: SparkSession,
    settings: InputSettings,
    contract: Contract,
    dates: Sequence[dt.date] | None,
) -> RawInput:
    """Read the run's raw input as strings, capturing malformed records and drift."""
    paths = io.input_paths(settings, dates)
    _warn_skipped(broken_links(paths))
    if settings.format in ("parquet", "delta"):
        raw = _read_native(spark, settings, contract, paths)
    else:
        files = list_files(spark, paths)
        if settings.format == "csv":
            raw = _read_csv(spark, settings, contract, files)
        elif settings.format == "json":
            raw = _read_json(spark, settings, contract, files)
        else:
            raw = _read_text(spark, settings, contract, files)
    raw.df = adapters.derive(contract, raw.df)
    return raw


_DIR_DATE = re.compile(r"event_date=(\d{4}-\d{2}-\d{2})")


def directory_date(source: Column) -> Column:
    """The landing partition date in a file path (``.../event_date=YYYY-MM-DD/...``)."""
    text = F.regexp_extract(source, _DIR_DATE.pattern, 1)
    return F.when(text != "", F.to_date(text))
