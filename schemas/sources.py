"""Contracts of the other input feeds: generated logs and sensors, and the real
datasets in ``../shared/data`` (card transactions, NAB series, BGL log lines).

Column names follow each source as it lands (the handbook's upper-case parquet
columns, NAB's ``timestamp,value``), so the reader never renames raw input; the
feature builders map them to canonical names.
"""

from __future__ import annotations

from pyspark.sql.types import DoubleType, LongType, StringType, TimestampType

from schemas.base import Contract, FieldSpec

LOGS = Contract(
    name="logs",
    version="1.0.0",
    description="One generated application log line (JSON lines).",
    key=("line_id",),
    event_time="event_ts",
    fields=(
        FieldSpec(
            "line_id",
            StringType(),
            "Unique id of the line, assigned by the shipper.",
            max_length=64,
        ),
        FieldSpec("event_ts", TimestampType(), "When the line was written (UTC)."),
        FieldSpec(
            "line",
            StringType(),
            "The raw line: 'ISO-ts host component[pid]: LEVEL msg'.",
            required=True,
            max_length=65_536,
        ),
    ),
    quirks=("The line is kept verbatim; parsing it into host/level/template is feature work.",),
)

SENSORS = Contract(
    name="sensors",
    version="1.0.0",
    description="One reading of a generated machine's sensors (one a minute).",
    key=("machine_id", "event_ts"),
    event_time="event_ts",
    fields=(
        FieldSpec("machine_id", StringType(), "Machine that reported.", max_length=64),
        FieldSpec("event_ts", TimestampType(), "Reading time (UTC)."),
        FieldSpec(
            "temperature",
            DoubleType(),
            "Temperature in deg C; null on a dropout.",
            finite=True,
            min_value=-50.0,
            max_value=500.0,
            max_null_fraction=0.05,
        ),
        FieldSpec(
            "vibration",
            DoubleType(),
            "Vibration RMS in mm/s; null on a dropout.",
            finite=True,
            min_value=0.0,
            max_value=1_000.0,
            max_null_fraction=0.05,
        ),
        FieldSpec(
            "pressure",
            DoubleType(),
            "Pressure in bar; null on a dropout.",
            finite=True,
            min_value=0.0,
            max_value=1_000.0,
            max_null_fraction=0.05,
        ),
    ),
    quirks=(
        "A sensor dropout is a null value, not a missing row: nulls are allowed "
        "(at most 5% per column) and gaps are the features' business.",
    ),
)

CARDTX = Contract(
    name="cardtx",
    version="1.0.0",
    description="One simulated card transaction (Fraud Detection Handbook, parquet).",
    key=("TRANSACTION_ID",),
    event_time="TX_DATETIME",
    fields=(
        FieldSpec("TRANSACTION_ID", LongType(), "Unique transaction number.", min_value=0.0),
        FieldSpec("TX_DATETIME", TimestampType(), "Transaction time (simulator clock, no zone)."),
        FieldSpec("CUSTOMER_ID", LongType(), "Card (customer) id.", required=True, min_value=0.0),
        FieldSpec("TERMINAL_ID", LongType(), "Terminal id.", required=True, min_value=0.0),
        FieldSpec(
            "TX_AMOUNT",
            DoubleType(),
            "Amount, >= 0 (see quirks).",
            required=True,
            min_value=0.0,
            max_value=100_000.0,
            finite=True,
            mean_range=(10.0, 200.0),
            quantile_ranges=((0.5, 10.0, 150.0),),
        ),
        FieldSpec(
            "TX_TIME_SECONDS",
            LongType(),
            "Seconds since the simulation start.",
            required=True,
            min_value=0.0,
        ),
        FieldSpec(
            "TX_TIME_DAYS",
            LongType(),
            "Days since the simulation start.",
            required=True,
            min_value=0.0,
        ),
        FieldSpec(
            "TX_FRAUD",
            LongType(),
            "Fraud label (1 = fraud): the simulator ships it with the data.",
            required=True,
            min_value=0.0,
            max_value=1.0,
            mean_range=(0.0, 0.05),
        ),
        FieldSpec(
            "TX_FRAUD_SCENARIO",
            LongType(),
            "0 genuine, 1 amount > 220, 2 compromised terminal, 3 compromised card.",
            required=True,
            min_value=0.0,
            max_value=3.0,
        ),
    ),
    quirks=(
        "The label travels with the data (TX_FRAUD); features use it only through the 7-day delay.",
        "TX_DATETIME has no zone; it is read as UTC wall-clock time.",
        "15 transactions have TX_AMOUNT exactly 0.0 (the simulator clips its normal draw "
        "at 0), so the amount floor is inclusive here, unlike the generated feed's > 0.",
        "Timestamps are 2018: far in the past for the clock-skew check, well after the floor.",
    ),
)

NAB = Contract(
    name="nab",
    version="1.0.0",
    description="One point of a Numenta Anomaly Benchmark series (timestamp,value CSV).",
    # No key: real NAB files repeat timestamps (see quirks); every point is kept.
    event_time="timestamp",
    fields=(
        FieldSpec("timestamp", TimestampType(), "Point time, 'yyyy-MM-dd HH:mm:ss', no zone."),
        FieldSpec("value", DoubleType(), "The metric.", required=True, finite=True),
        FieldSpec(
            "series_id",
            StringType(),
            "'<category>/<name>.csv' from the file path.",
            derived=True,
            required=True,
        ),
        FieldSpec(
            "event_ts", TimestampType(), "Copy of timestamp under the common name.", derived=True
        ),
    ),
    quirks=(
        "The series id is not in the file: it is the file's path <category>/<name>.csv.",
        "Values have no common unit or range across series, so no range bounds.",
        "Timestamps repeat with different values: machine_temperature_system_failure has 12 "
        "timestamps twice (24 rows), ec2_request_latency_system_failure has 2014-03-09 03:00:00 "
        "12 times. They are real points, so there is no uniqueness check; the features "
        "aggregate per step.",
        "Steps differ per series (5 min mostly, 1 h for ambient temperature).",
    ),
)

BGL = Contract(
    name="bgl",
    version="1.0.0",
    description="One BlueGene/L RAS log line (loghub BGL), parsed by a regex on read.",
    event_time="event_ts",
    parser="bgl",
    fields=(
        FieldSpec("line", StringType(), "The raw line, label included.", required=True),
        FieldSpec(
            "alert_label",
            StringType(),
            "loghub alert category; '-' is a normal line.",
            required=True,
        ),
        FieldSpec("epoch_s", LongType(), "Unix seconds of the event.", required=True),
        FieldSpec("log_date", StringType(), "yyyy.mm.dd of the event (local)."),
        FieldSpec("node", StringType(), "Node that logged the line.", required=True),
        FieldSpec("node_repeat", StringType(), "The node again (BGL repeats it)."),
        FieldSpec("msg_type", StringType(), "Message type, RAS for all of BGL_2k."),
        FieldSpec("component", StringType(), "KERNEL, APP, MMCS, ...", required=True),
        FieldSpec(
            "level",
            StringType(),
            "Severity.",
            required=True,
            allowed=("INFO", "WARNING", "SEVERE", "ERROR", "FATAL", "FAILURE"),
        ),
        FieldSpec("content", StringType(), "Free-text message (may be empty)."),
        FieldSpec("event_ts", TimestampType(), "epoch_s + the text's microseconds, UTC."),
    ),
    quirks=(
        "The first token is the label, not data: it is its own column.",
        "The text timestamp is local time (PDT); event_ts uses the UTC epoch field.",
        "No unique id: identical lines can legitimately repeat, so no duplicate check.",
    ),
)
