"""Contract of the generated card/account transaction feed (raw input).

Labels never travel with the feed: the generator writes them to the separate
``labels`` table, as a real fraud team receives chargebacks later and elsewhere.
"""

from __future__ import annotations

from pyspark.sql.types import DoubleType, StringType, TimestampType

from schemas.base import Contract, FieldSpec

CURRENCIES = ("EUR", "USD", "GBP", "CHF", "SEK", "PLN", "JPY")
COUNTRIES = ("DE", "FR", "NL", "BE", "ES", "IT", "GB", "US", "CH", "SE", "PL", "JP")
CHANNELS = ("pos", "online", "atm")
MAX_AMOUNT = 1_000_000.0
MERCHANT_CATEGORIES = (
    "grocery",
    "fuel",
    "restaurant",
    "travel",
    "electronics",
    "fashion",
    "pharmacy",
    "digital_goods",
)

TRANSACTIONS = Contract(
    name="transactions",
    version="1.1.0",
    description="One card or account payment, as the payment switch emits it.",
    key=("transaction_id",),
    event_time="event_ts",
    fields=(
        FieldSpec(
            "transaction_id",
            StringType(),
            "Unique id of the payment, assigned upstream.",
            max_length=64,
        ),
        FieldSpec(
            "account_id",
            StringType(),
            "Card or account that paid.",
            required=True,
            max_length=64,
        ),
        FieldSpec(
            "merchant_id",
            StringType(),
            "Merchant (acceptor) that was paid.",
            required=True,
            max_length=64,
        ),
        FieldSpec(
            "merchant_category",
            StringType(),
            "Merchant category, one of a known set.",
            allowed=MERCHANT_CATEGORIES,
            max_null_fraction=0.05,
        ),
        FieldSpec(
            "amount",
            DoubleType(),
            "Amount in the transaction currency, > 0.",
            required=True,
            min_value=0.0,
            min_exclusive=True,
            # Above a million in any currency of the set is a unit bug, not a payment.
            max_value=MAX_AMOUNT,
            finite=True,
            # Card payments: a typical mean of tens to a few hundreds; a mean outside
            # this band means cents/units or currency got mixed up upstream.
            mean_range=(1.0, 5_000.0),
            quantile_ranges=((0.5, 0.5, 1_000.0), (0.99, 5.0, 50_000.0)),
        ),
        FieldSpec(
            "currency", StringType(), "ISO 4217 currency code.", required=True, allowed=CURRENCIES
        ),
        FieldSpec(
            "country",
            StringType(),
            "ISO 3166-1 alpha-2 country of the merchant.",
            required=True,
            allowed=COUNTRIES,
        ),
        FieldSpec("channel", StringType(), "pos, online or atm.", required=True, allowed=CHANNELS),
        FieldSpec("event_ts", TimestampType(), "When the payment happened (UTC)."),
    ),
    quirks=(
        "event_ts may carry any ISO-8601 offset; it is normalised to UTC on read, and a "
        "timestamp without an offset is taken as UTC.",
        "amount is in the transaction currency (JPY has no minor unit), so distribution "
        "bounds are wide on purpose.",
    ),
)
