"""Shared fixtures: one local SparkSession for the whole run, a lakehouse per test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehound.config import Config, load_config
from lakehound.session import build_session

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def require(path: Path, how: str) -> Path:
    """``path``, or fail the test with a message naming it and how to provide it.

    A failure, not a skip: the data, virtualenvs and jars these tests need are part
    of the test environment, and a tier whose tests skip themselves reads as green
    while checking nothing.
    """
    if not path.exists():
        pytest.fail(f"{path} is missing: {how}", pytrace=False)
    return path


def require_shared(path: Path) -> Path:
    """``path`` under ../shared/data (the real labelled datasets), or fail naming it."""
    return require(path, f"the real datasets must be in {SHARED_DATA} (../shared/data)")


# pyspark.pandas (imported by pyspark.testing and GX) wants this before a Spark
# context starts; the session builder sets it for jobs.
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    cfg = load_config(ROOT / "conf" / "transactions.yaml", ["spark.shuffle_partitions=2"])
    session = build_session(cfg.spark, app_name="lakehound-tests")
    yield session
    session.stop()


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., Config]:
    """Config for ``conf/<dataset>.yaml`` with the lakehouse and input under tmp_path."""

    def _make(dataset: str = "transactions", *overrides: str) -> Config:
        base = [
            f"lakehouse={tmp_path / 'lakehouse'}",
            f"input.path={tmp_path / 'raw'}",
            "spark.shuffle_partitions=2",
        ]
        return load_config(ROOT / "conf" / f"{dataset}.yaml", [*base, *overrides])

    return _make
