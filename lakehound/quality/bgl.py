"""loghub's BGL_2k with its reference parse: template accuracy of the log features.

Shared by the quality test (tests/features/test_logs.py) and the quality benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehound.features import logs as L

LOG = "BGL_2k.log"
STRUCTURED = "BGL_2k.log_structured.csv"


def with_reference(spark: SparkSession, directory: Path) -> DataFrame:
    """BGL_2k parsed by :func:`parse_bgl`, each line with loghub's ``EventId`` and
    ``EventTemplate`` (joined on the 1-based ``LineId``)."""
    raw = (directory / LOG).read_text(encoding="utf-8").splitlines()
    lines = spark.createDataFrame(list(enumerate(raw, start=1)), "LineId long, value string")
    ref = (
        spark.read.option("header", "true")
        .option("multiLine", "true")
        .option("escape", '"')
        .csv(str(directory / STRUCTURED))
        .select(F.col("LineId").cast("long").alias("LineId"), "EventId", "EventTemplate")
    )
    return L.parse_bgl(lines).join(ref, "LineId")


def template_accuracy(spark: SparkSession, directory: Path) -> dict[str, Any]:
    """Lines, loghub grouping accuracy and parsing accuracy of the mined templates."""
    parsed = with_reference(spark, directory)
    got = L.assign_templates(parsed, L.mine_templates(parsed))
    return {
        "lines": parsed.count(),
        "grouping_accuracy": L.grouping_accuracy(got),
        "parsing_accuracy": L.parsing_accuracy(got),
    }
