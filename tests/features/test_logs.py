"""Log parsing, masking, Drain-style templates (accuracy on loghub BGL_2k), window
features, point-in-time correctness, and the labelled log generator."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehound.config import GenerateSettings, LogGenerateSettings
from lakehound.features import logs as L
from lakehound.generators import logs as gen
from lakehound.quality import bgl
from tests.conftest import SHARED_DATA, require_shared

BGL = SHARED_DATA / "logs" / "BGL"
T0 = dt.datetime(2024, 1, 1, 0, 0, 0)
S = dt.timedelta(seconds=1)
M = dt.timedelta(minutes=1)
PARSED = "event_ts timestamp, host string, component string, level string, message string"


def test_parse_bgl_strips_the_label_token_first(spark: SparkSession) -> None:
    lines = spark.createDataFrame(
        [
            ("- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 "
             "R02-M1-N0-C:J12-U11 RAS KERNEL INFO instruction cache parity error corrected",),
            ("APPREAD 1117869872 2005.06.04 R04-M1-N4-I:J18-U11 2005-06-04-00.24.32.432192 "
             "R04-M1-N4-I:J18-U11 RAS APP FATAL ciod: failed to read message prefix",),
            ("garbage line",),
        ],
        "value string",
    )  # fmt: skip
    rows = L.parse_bgl(lines).collect()
    a, b, bad = rows
    assert a["label"] == "-" and a["is_alert"] is False
    # 1117838570 s since the epoch = 2005-06-03 22:42:50 UTC (15:42:50 PDT in the text).
    assert a["event_ts"] == dt.datetime(2005, 6, 3, 22, 42, 50, 675872)
    assert (a["host"], a["component"], a["level"]) == ("R02-M1-N0-C:J12-U11", "KERNEL", "INFO")
    assert a["message"] == "instruction cache parity error corrected"
    assert b["label"] == "APPREAD" and b["is_alert"] is True and b["level"] == "FATAL"
    assert b["message"] == "ciod: failed to read message prefix"
    assert bad["parse_ok"] is False and bad["event_ts"] is None


def test_parse_generic_default_and_custom_pattern(spark: SparkSession) -> None:
    lines = spark.createDataFrame(
        [
            ("2024-01-01T00:03:12.345Z host-007 nginx[1234]: INFO GET /api/v1/items/42 200",),
            ("not a log line",),
        ],
        "value string",
    )
    ok, bad = L.parse_generic(lines).collect()
    assert ok["event_ts"] == dt.datetime(2024, 1, 1, 0, 3, 12, 345000)
    assert (ok["host"], ok["component"], ok["level"]) == ("host-007", "nginx", "INFO")
    assert ok["message"] == "GET /api/v1/items/42 200"
    assert bad["parse_ok"] is False
    custom = spark.createDataFrame([("01/02/2024 10:00:00|ERROR|db|disk full",)], "value string")
    (row,) = L.parse_generic(
        custom,
        r"^([^|]+)\|([^|]+)\|([^|]+)\|(.*)$",
        {"timestamp": 1, "level": 2, "component": 3, "message": 4},
        ts_format="dd/MM/yyyy HH:mm:ss",
    ).collect()
    assert row["event_ts"] == dt.datetime(2024, 2, 1, 10, 0) and row["host"] is None
    assert (row["level"], row["component"], row["message"]) == ("ERROR", "db", "disk full")


def test_mask_message(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [
            ("connect from 10.0.0.12:5432 took 35 ms",),
            ("open /var/log/app.log failed at 0x1f3a",),
            ("job 123e4567-e89b-12d3-a456-426614174000 done",),
            ("node R23-M0 ok",),
        ],
        "m string",
    )
    got = [r[0] for r in df.select(L.mask_message(F.col("m"))).collect()]
    assert got == [
        "connect from <*> took <*> ms",
        "open <*> failed at <*>",
        "job <*> done",
        "node R<*>-M<*> ok",
    ]


@pytest.mark.quality
def test_template_accuracy_on_loghub_bgl_2k(spark: SparkSession) -> None:
    """Measured: grouping accuracy 0.971 and parsing accuracy 0.853 with Drain's
    published BGL setting (2 prefix tokens, similarity 0.5); Drain's own BGL_2k GA
    in the loghub benchmark is 0.963. Thresholds sit just under the measured values,
    so a regression in masking or merging fails the test."""
    require_shared(BGL / "BGL_2k.log")
    parsed = bgl.with_reference(spark, BGL)
    assert parsed.where("parse_ok").count() == 2000
    assert parsed.where("is_alert").count() == 143  # the dataset README's count
    mapping = L.mine_templates(parsed)
    got = L.assign_templates(parsed, mapping)
    ga = L.grouping_accuracy(got)
    pa = L.parsing_accuracy(got)
    assert ga >= 0.96, ga
    assert pa >= 0.84, pa


def _lines(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, PARSED)


def _small() -> list[tuple]:
    return [
        (T0 + 10 * S, "h1", "app", "INFO", "user 17 logged in"),
        (T0 + 20 * S, "h1", "app", "ERROR", "disk /dev/sda1 full"),
        (T0 + 30 * S, "h1", "app", "WARN", "slow query 350 ms"),
        (T0 + 6 * M, "h1", "app", "INFO", "user 18 logged in"),
        (T0 + 40 * S, "h2", "db", "INFO", "user 19 logged in"),
        (T0 + 21 * M, "h2", "db", "INFO", "checkpoint done"),
    ]


def test_log_window_features_hand_computed(spark: SparkSession) -> None:
    f = L.log_features(_lines(spark, _small()), "5 minutes", history_windows=2)
    rows = {(r["entity_id"], r["window_start"]): r for r in f.collect()}
    w0 = rows[("h1", T0)]
    assert (w0["n_events"], w0["n_errors"], w0["n_warnings"]) == (3.0, 1.0, 1.0)
    assert w0["error_rate"] == pytest.approx(1 / 3) and w0["warn_rate"] == pytest.approx(1 / 3)
    assert w0["n_templates"] == 3.0 and w0["n_new_templates"] == 3.0
    assert w0["template_entropy"] == pytest.approx(1.0986122886681098)  # ln 3
    assert w0["events_ratio_hist"] == 1.0  # no history: no evidence of change
    assert w0["event_ts"] == T0 + 5 * M  # a window row is stamped with its end
    w1 = rows[("h1", T0 + 5 * M)]
    # "user <*> logged in" was seen by h1 at 00:00:10 and h2 at 00:00:40: not new.
    assert w1["n_events"] == 1.0 and w1["n_new_templates"] == 0.0
    assert w1["events_mean_hist"] == 3.0 and w1["events_ratio_hist"] == pytest.approx(
        (1 + 1) / (3 + 1)
    )
    assert w1["mins_since_last_event"] == pytest.approx(4.0)  # 00:06 -> 00:10
    # h1 falls silent after 00:06: empty windows follow, with a growing silence.
    w4 = rows[("h1", T0 + 20 * M)]
    assert w4["n_events"] == 0.0 and w4["error_rate"] == 0.0 and w4["template_counts"] == {}
    assert w4["mins_since_last_event"] == pytest.approx(19.0)
    # nothing after the input's last window (00:20-00:25) is produced.
    assert max(k[1] for k in rows) == T0 + 20 * M
    h2 = rows[("h2", T0 + 20 * M)]
    assert h2["n_new_templates"] == 1.0 and sum(h2["template_counts"].values()) == 1


def test_log_features_point_in_time(spark: SparkSession) -> None:
    before = L.log_features(_lines(spark, _small()), "5 minutes")
    later = [
        (T0 + 22 * M, "h1", "app", "ERROR", "disk /dev/sdb2 full"),
        (T0 + 2 * dt.timedelta(days=1), "h3", "app", "INFO", "user 1 logged in"),
        (T0 + 30 * M, "h2", "db", "FATAL", "kernel panic"),
    ]
    after = L.log_features(_lines(spark, _small() + later), "5 minutes")
    # Rows of windows that ended before the first appended line are unchanged.
    cut = T0 + 20 * M
    assertDataFrameEqual(
        after.where(F.col("window_start") < cut), before.where(F.col("window_start") < cut)
    )


def test_templates_mined_on_one_day_do_not_change_with_later_days(spark: SparkSession) -> None:
    day1 = _lines(spark, _small())
    later = _lines(
        spark, [(T0 + dt.timedelta(days=1), "h1", "app", "INFO", "user admin logged in")]
    )
    m1 = L.mine_templates(day1)
    got1 = L.assign_templates(day1, m1).select("message", "template_id")
    # The job mines each date's new shapes separately and appends them.
    m2 = m1.unionByName(L.mine_templates(later))
    got2 = L.assign_templates(day1.unionByName(later), m2).where(F.col("event_ts") < T0 + 30 * M)
    assertDataFrameEqual(got2.select("message", "template_id"), got1)
    tmpl = {r["message"]: r["template"] for r in L.assign_templates(day1, m1).collect()}
    assert tmpl["user 17 logged in"] == "user <*> logged in"


def test_log_generator_labels_its_anomalies(spark: SparkSession) -> None:
    s = GenerateSettings(days=1, logs=LogGenerateSettings(hosts=4, events_per_host_minute=0.5))
    raw, labels = gen.generate(spark, s)
    types = {r[0]: r[1] for r in labels.groupBy("anomaly_type").count().collect()}
    assert types[None] > 1000
    assert types["error_burst"] == 2 * 10 * 20  # bursts/day * minutes * lines/minute
    assert types["new_template"] == 15 and types["silent_host"] == 1
    parsed = L.parse_generic(raw.withColumnRenamed("line", "value"))
    assert parsed.where(~F.col("parse_ok")).count() == 0
    (ep,) = labels.where("anomaly_type = 'silent_host'").collect()
    silent = parsed.where(
        (F.col("host") == ep["host"]) & F.col("event_ts").between(ep["start_ts"], ep["end_ts"])
    )
    assert silent.count() == 0
    feats = L.log_features(L.assign_templates(parsed), "5 minutes")
    # The new template shows up as never-seen in its host's window.
    new = (
        labels.where("anomaly_type = 'new_template'")
        .agg(F.min("start_ts"), F.first("host"))
        .first()
    )
    assert new is not None
    hit = feats.where(
        (F.col("entity_id") == new[1])
        & (F.col("window_start") <= new[0])
        & (F.col("event_ts") > new[0])
    ).first()
    assert hit is not None and hit["n_new_templates"] >= 1.0
