"""Contracts by name, the value of ``validation.contract`` in a dataset config."""

from __future__ import annotations

from schemas.base import Contract
from schemas.sources import BGL, CARDTX, LOGS, NAB, SENSORS
from schemas.transactions import TRANSACTIONS

CONTRACTS: dict[str, Contract] = {
    c.name: c for c in (TRANSACTIONS, LOGS, SENSORS, CARDTX, NAB, BGL)
}


def get_contract(name: str) -> Contract:
    """The contract registered as ``name``; KeyError names the known ones."""
    try:
        return CONTRACTS[name]
    except KeyError:
        raise KeyError(f"unknown contract {name!r} (known: {sorted(CONTRACTS)})") from None
