"""Point-in-time correct transaction features, in native Spark window functions.

Two feature sets, both registered in :mod:`lakehound.features.registry`:

* ``transactions`` (the generated feed: account, merchant, country):
  :func:`transaction_features`;
* ``cardtx`` (the Fraud Detection Handbook simulator in ../shared/data/transactions:
  card and terminal ids only): :func:`cardtx_features`, the handbook's 15 features.

Every feature of a row is computed from events at or before the row's own
timestamp (range frames ending at the current row, or at ``-1`` second for "the
entity's history"), so appending later events can never change earlier rows.
Account and card windows are Spark range frames; merchant windows, which hold
thousands of rows each, are the same frames computed from running totals
(:mod:`lakehound.features.windows`) so their cost stays linear in the rows.
Fraud labels are used only with an explicit delay (``label_delay_days``): a
transaction's label counts for a row only if it happened at least that long
before the row, as chargebacks arrive late in real life (handbook, ch. 3.4).

Policies, declared once here and in the registry descriptions:

* new entity, no history: counts are 1 (the row itself); window means are the
  row's own value and window stds 0.0; history-based statistics (z-score, hour
  deviation) are 0.0, meaning "no evidence of anything unusual"; time since
  previous is the look-back horizon; risk with no delayed history is 0.0;
* missing values cannot reach this stage (validation quarantines them); a missing
  label (no ``labels`` table) means "not known to be fraud" (risk 0.0);
* extreme values are kept as they are (they are what we look for); z-scores use
  a floor on the standard deviation so a perfectly regular account does not turn
  a cent of difference into z = 1e9;
* implied travel speed needs coordinates, which neither the generated feed
  (country only) nor the handbook data has: :func:`travel_speed_kmh` computes
  it for feeds that carry ``lat``/``lon`` and is not part of either feature set.
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame, Window, WindowSpec
from pyspark.sql import functions as F

from lakehound.features.windows import mean_std, window_sums

HOUR = 3600
DAY = 24 * HOUR
_STD_FLOOR = 0.1  # in log-amount units, ~10% of the amount

# Entity windows of the generated feed's grid features: label -> seconds.
TX_WINDOWS: dict[str, int] = {"1h": HOUR, "1d": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
# Windows whose columns existed before the grid (kept for model lineage).
_LEGACY = {"acct_count_1h", "acct_count_1d", "acct_count_7d", "acct_amount_sum_1d", "acct_amount_std_30d",
           "merchant_count_1d"}  # fmt: skip
RISK_WINDOW_DAYS = 7
# Handbook windows (days) for card and terminal features.
CARDTX_WINDOWS = (1, 7, 30)


def _frame(keys: list[str], start: int, end: int) -> WindowSpec:
    return Window.partitionBy(*keys).orderBy("_ts").rangeBetween(start, end)


def _z(value: Column, mean: Column, std: Column, n: Column) -> Column:
    z = (value - mean) / F.greatest(F.coalesce(std, F.lit(0.0)), F.lit(_STD_FLOOR))
    return F.when(n >= 3, z).otherwise(F.lit(0.0))


def grid_columns(entity: str) -> list[str]:
    """Window-grid columns added for ``entity`` (``acct``/``merchant``), in output order."""
    out = []
    for w in TX_WINDOWS:
        for stat in ("count", "amount_sum", "amount_mean", "amount_std"):
            name = f"{entity}_{stat}_{w}"
            if name not in _LEGACY:
                out.append(name)
    return out


def _grid(entity: str, key: str) -> list[Column]:
    cols: list[Column] = []
    for w, secs in TX_WINDOWS.items():
        frame = _frame([key], -secs, 0)
        exprs = {
            "count": F.count("*").over(frame).cast("double"),
            "amount_sum": F.log1p(F.sum("amount").over(frame)),
            "amount_mean": F.avg("log_amount").over(frame),
            "amount_std": F.coalesce(F.stddev_samp("log_amount").over(frame), F.lit(0.0)),
        }
        for stat, expr in exprs.items():
            name = f"{entity}_{stat}_{w}"
            if name not in _LEGACY:
                cols.append(expr.alias(name))
    return cols


def _merchant_windows(x: DataFrame, label_delay_days: int, emit: Column | None) -> DataFrame:
    """The merchant columns (grid, 1-day count, 7-day history, delayed risk) of ``x``,
    keyed by (merchant, transaction id, second), through running-total differences: a merchant has
    thousands of payments a day, so Spark's range frames would cost rows x window
    (see :mod:`lakehound.features.windows`). Same values as the frames they replace.
    """
    delay = label_delay_days * DAY if label_delay_days > 0 else 1
    frames = {f"g{w}": (-secs, 0) for w, secs in TX_WINDOWS.items()}
    frames["hist7d"] = (-7 * DAY, -1)
    # _risk's frame: (t - delay - 7 d, t - delay], a second before the row at least.
    frames["risk"] = (-(label_delay_days + RISK_WINDOW_DAYS) * DAY + 1, -delay)
    sums = window_sums(
        x,
        "merchant_id",
        ["transaction_id", "_ts"],
        {
            "n": F.lit(1.0),
            "amt": F.col("amount"),
            "s": F.col("log_amount"),
            "ss": F.col("log_amount") * F.col("log_amount"),
            "fraud": F.col("_fraud"),
        },
        frames,
        emit,
    )
    cols: list[Column] = []
    for w in TX_WINDOWS:
        n = F.col(f"g{w}_n")
        mean, std = mean_std(n, F.col(f"g{w}_s"), F.col(f"g{w}_ss"))
        exprs = {
            "count": n,
            "amount_sum": F.log1p(F.col(f"g{w}_amt")),
            "amount_mean": mean,
            "amount_std": std,
        }
        cols += [e.alias(f"merchant_{stat}_{w}") for stat, e in exprs.items()]
    mean7, std7 = mean_std(F.col("hist7d_n"), F.col("hist7d_s"), F.col("hist7d_ss"))
    return sums.select(
        "merchant_id",
        "transaction_id",
        "_ts",
        *cols,
        F.col("hist7d_n").alias("_n_m"),
        mean7.alias("_mean_m"),
        F.when(F.col("hist7d_n") >= 2, std7).alias("_std_m"),
        _ratio(F.col("risk_fraud"), F.col("risk_n")).alias("merchant_risk_7d"),
    )


def _with_labels(df: DataFrame, labels: DataFrame | None, id_col: str) -> DataFrame:
    """Add ``_fraud`` (0/1) from ``labels(<id_col>, is_anomaly)``; 0 without labels."""
    if labels is None:
        return df.withColumn("_fraud", F.lit(0))
    lab = labels.select(
        F.col(id_col).alias("_lid"), F.col("is_anomaly").cast("int").alias("_fraud")
    ).dropDuplicates(["_lid"])
    return (
        df.join(lab, df[id_col] == lab["_lid"], "left")
        .drop("_lid")
        .withColumn("_fraud", F.coalesce(F.col("_fraud"), F.lit(0)))
    )


def _risk(key: str, days: int, delay_days: int) -> tuple[Column, Column]:
    """(fraud count, tx count) of ``key`` over ``(t - delay - days, t - delay]``.

    Integer-second timestamps make ``[start + 1, end]`` the half-open pandas
    ``rolling('Nd')`` window the handbook uses.
    """
    # With no delay the frame still ends a second before the row: a row's own label
    # must never feed its features.
    end = -delay_days * DAY if delay_days > 0 else -1
    frame = _frame([key], -(delay_days + days) * DAY + 1, end)
    return F.sum("_fraud").over(frame), F.count("*").over(frame)


def _ratio(num: Column, den: Column) -> Column:
    return F.when(den > 0, num / den).otherwise(F.lit(0.0)).cast("double")


def transaction_features(
    df: DataFrame,
    lookback_days: int = 30,
    labels: DataFrame | None = None,
    label_delay_days: int = 7,
    emit: Column | None = None,
) -> DataFrame:
    """Validated transactions -> one feature row per transaction (source ``transactions``).

    ``df`` must hold the run's dates plus the look-back (``lookback_days`` and
    ``label_delay_days + 7`` for the merchant risk) before them. ``emit``, a
    predicate on ``df``'s columns, selects the rows to return (the run's dates; all
    rows without it); the others only feed their windows. ``labels`` (``transaction_id,
    is_anomaly``) feeds the merchant risk; without it the risk is 0.0.
    """
    horizon = lookback_days * DAY
    acct = ["account_id"]
    x = df.select(
        "transaction_id",
        "account_id",
        "merchant_id",
        "country",
        "amount",
        "event_ts",
        F.col("event_ts").cast("long").alias("_ts"),
        F.log1p("amount").alias("log_amount"),
        (F.hour("event_ts") + F.minute("event_ts") / 60.0).alias("_hour"),
        ((F.dayofweek("event_ts") + 5) % 7).alias("_dow"),  # Monday = 0
        (F.lit(True) if emit is None else emit).alias("_emit"),
    )
    x = _with_labels(x, labels, "transaction_id")
    hist = _frame(acct, -horizon, -1)
    hour_angle = 2 * math.pi * F.col("_hour") / 24.0
    x = x.select(
        "*",
        F.count("*").over(_frame(acct, -HOUR, 0)).alias("acct_count_1h"),
        F.count("*").over(_frame(acct, -DAY, 0)).alias("acct_count_1d"),
        F.count("*").over(_frame(acct, -7 * DAY, 0)).alias("acct_count_7d"),
        F.log1p(F.sum("amount").over(_frame(acct, -DAY, 0))).alias("acct_amount_sum_1d"),
        F.count("*").over(hist).alias("_n_hist"),
        F.avg("log_amount").over(hist).alias("_mean_hist"),
        F.stddev_samp("log_amount").over(hist).alias("acct_amount_std_30d_hist"),
        F.max("_ts").over(hist).alias("_prev_ts"),
        F.avg(F.sin(hour_angle)).over(hist).alias("_hs"),
        F.avg(F.cos(hour_angle)).over(hist).alias("_hc"),
        F.count("*").over(_frame(["account_id", "merchant_id"], -horizon, -1)).alias("_n_am"),
        F.count("*").over(_frame(["account_id", "country"], -horizon, -1)).alias("_n_ac"),
        *_grid("acct", "account_id"),
    ).join(
        # Inner join: the rows outside ``emit`` have no merchant windows and drop here.
        _merchant_windows(x, label_delay_days, F.col("_emit")),
        ["merchant_id", "transaction_id", "_ts"],
    )
    dev = 1.0 - (F.sin(hour_angle) * F.col("_hs") + F.cos(hour_angle) * F.col("_hc"))
    return x.select(
        F.col("transaction_id").alias("event_id"),
        F.col("account_id").alias("entity_id"),
        "event_ts",
        F.to_date("event_ts").alias("event_date"),
        "log_amount",
        F.col("acct_count_1h").cast("double").alias("acct_count_1h"),
        F.col("acct_count_1d").cast("double").alias("acct_count_1d"),
        F.col("acct_count_7d").cast("double").alias("acct_count_7d"),
        "acct_amount_sum_1d",
        _z(
            F.col("log_amount"),
            F.col("_mean_hist"),
            F.col("acct_amount_std_30d_hist"),
            F.col("_n_hist"),
        ).alias("acct_amount_z_30d"),
        F.coalesce("acct_amount_std_30d_hist", F.lit(0.0)).alias("acct_amount_std_30d"),
        F.log1p(F.coalesce(F.col("_ts") - F.col("_prev_ts"), F.lit(horizon)).cast("double")).alias(
            "acct_secs_since_prev"
        ),
        (F.col("_n_am") == 0).cast("double").alias("acct_new_merchant"),
        (F.col("_n_ac") == 0).cast("double").alias("acct_new_country"),
        F.when(F.col("_n_hist") >= 3, dev).otherwise(F.lit(0.0)).alias("acct_hour_deviation"),
        F.col("merchant_count_1d").cast("double").alias("merchant_count_1d"),
        _z(F.col("log_amount"), F.col("_mean_m"), F.col("_std_m"), F.col("_n_m")).alias(
            "merchant_amount_z_7d"
        ),
        F.sin(hour_angle).alias("hour_sin"),
        F.cos(hour_angle).alias("hour_cos"),
        F.sin(2 * math.pi * F.col("_dow") / 7.0).alias("dow_sin"),
        F.cos(2 * math.pi * F.col("_dow") / 7.0).alias("dow_cos"),
        *grid_columns("acct"),
        *grid_columns("merchant"),
        "merchant_risk_7d",
    )


# ---------------------------------------------------------------------------
# cardtx: the Fraud Detection Handbook simulator (card and terminal ids only)
# ---------------------------------------------------------------------------

# Canonical column -> accepted input names (validated contract names first).
CARDTX_COLUMNS: dict[str, tuple[str, ...]] = {
    "transaction_id": ("transaction_id", "TRANSACTION_ID"),
    "event_ts": ("event_ts", "TX_DATETIME"),
    "card_id": ("card_id", "customer_id", "CUSTOMER_ID"),
    "terminal_id": ("terminal_id", "TERMINAL_ID"),
    "amount": ("amount", "TX_AMOUNT"),
}
CARDTX_LABEL_COLUMNS = ("is_fraud", "TX_FRAUD", "is_anomaly")


def canonical_cardtx(df: DataFrame) -> DataFrame:
    """Rename the handbook's columns (or the contract's) to ``transaction_id,
    event_ts, card_id, terminal_id, amount`` (+ ``is_fraud`` when a label column
    is present). A missing column is a :class:`ValueError` naming it."""
    out: list[Column] = []
    for canon, names in CARDTX_COLUMNS.items():
        found = next((n for n in names if n in df.columns), None)
        if found is None:
            raise ValueError(f"cardtx: no column for {canon!r} (tried {names}); has {df.columns}")
        col = F.col(found)
        # The handbook's parquet holds naive (NTZ) datetimes: read them as UTC.
        out.append((col.cast("timestamp") if canon == "event_ts" else col).alias(canon))
    label = next((n for n in CARDTX_LABEL_COLUMNS if n in df.columns), None)
    if label is not None:
        out.append(F.col(label).cast("int").alias("is_fraud"))
    return df.select(*out)


def cardtx_features(
    df: DataFrame,
    labels: DataFrame | None = None,
    label_delay_days: int = 7,
) -> DataFrame:
    """Handbook transactions -> the handbook's 15 features (source ``cardtx``).

    Le Borgne et al., *Reproducible Machine Learning for Credit Card Fraud
    Detection*, ch. 3.4: amount; weekend and night flags; per card the number and
    mean amount of transactions in the last 1/7/30 days (this one included); per
    terminal the number of transactions and the fraud risk over 1/7/30 days
    ending ``label_delay_days`` before the transaction. Labels come from
    ``labels`` (``transaction_id, is_anomaly``) or, failing that, from a label
    column of ``df`` (``TX_FRAUD``/``is_fraud``): labels are used only through
    the delay, so they never leak into the row they label.
    """
    x = canonical_cardtx(df)
    x = x.withColumn("_ts", F.col("event_ts").cast("long"))
    if labels is not None:
        x = _with_labels(x.drop("is_fraud") if "is_fraud" in x.columns else x, labels,
                         "transaction_id")  # fmt: skip
    elif "is_fraud" in x.columns:
        x = x.withColumn("_fraud", F.coalesce(F.col("is_fraud"), F.lit(0)))
    else:
        x = x.withColumn("_fraud", F.lit(0))
    cols: list[Column] = [
        F.col("amount").cast("double").alias("tx_amount"),
        # Spark: 1 = Sunday, 7 = Saturday.
        F.dayofweek("event_ts").isin(1, 7).cast("double").alias("tx_during_weekend"),
        (F.hour("event_ts") <= 6).cast("double").alias("tx_during_night"),
    ]
    for d in CARDTX_WINDOWS:
        # (t - d days, t]: the handbook's pandas rolling('dd') on the card's history.
        frame = _frame(["card_id"], -d * DAY + 1, 0)
        cols += [
            F.count("*").over(frame).cast("double").alias(f"card_nb_tx_{d}d"),
            F.avg("amount").over(frame).cast("double").alias(f"card_avg_amount_{d}d"),
        ]
    for d in CARDTX_WINDOWS:
        fraud, n = _risk("terminal_id", d, label_delay_days)
        cols += [
            n.cast("double").alias(f"terminal_nb_tx_{d}d"),
            _ratio(fraud, n).alias(f"terminal_risk_{d}d"),
        ]
    return x.select(
        F.col("transaction_id").cast("string").alias("event_id"),
        F.col("card_id").cast("string").alias("entity_id"),
        "event_ts",
        F.to_date("event_ts").alias("event_date"),
        *cols,
    )


def travel_speed_kmh(df: DataFrame, entity: str = "account_id") -> DataFrame:
    """Add ``travel_speed_kmh``: great-circle km from the entity's previous
    transaction (``lat``, ``lon`` in degrees) divided by the hours between them.

    0.0 for an entity's first transaction; simultaneous transactions at different
    places use a 1-second floor so the speed is huge, not infinite. Looks only
    backwards (``lag``), so it is point-in-time correct.
    """
    missing = [c for c in ("lat", "lon", "event_ts", entity) if c not in df.columns]
    if missing:
        raise ValueError(f"travel_speed_kmh: input lacks {missing}")
    w = Window.partitionBy(entity).orderBy("event_ts")
    lat1, lon1 = F.radians(F.lag("lat").over(w)), F.radians(F.lag("lon").over(w))
    lat2, lon2 = F.radians("lat"), F.radians("lon")
    a = F.pow(F.sin((lat2 - lat1) / 2), 2) + F.cos(lat1) * F.cos(lat2) * F.pow(
        F.sin((lon2 - lon1) / 2), 2
    )
    km = 2 * 6371.0088 * F.asin(F.sqrt(F.least(a, F.lit(1.0))))
    secs = F.col("event_ts").cast("double") - F.lag("event_ts").over(w).cast("double")
    speed = km / (F.greatest(secs, F.lit(1.0)) / 3600.0)
    # greatest/least skip nulls, so the first row must be caught explicitly.
    first = F.lag("event_ts").over(w).isNull()
    return df.withColumn("travel_speed_kmh", F.when(first, F.lit(0.0)).otherwise(speed))
