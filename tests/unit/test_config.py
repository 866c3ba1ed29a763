"""Config layering, overrides and start-up validation (exit code 2, one line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs import generate
from lakehound.config import load_config, parse_override
from lakehound.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TX = ROOT / "conf" / "transactions.yaml"


def test_layers_base_dataset_env_and_overrides() -> None:
    cfg = load_config(TX, ["lakehouse=/tmp/elsewhere", "spark.shuffle_partitions=3"])
    assert cfg.dataset == "transactions"  # from the dataset file
    assert cfg.spark.driver_memory == "4g"  # from base.yaml
    assert cfg.spark.master == "local[*]"  # from env/local.yaml
    assert cfg.lakehouse == "/tmp/elsewhere"
    assert cfg.spark.shuffle_partitions == 3


def test_environment_overlay_and_set_wins_over_it() -> None:
    cfg = load_config(TX, environment="cluster")
    assert cfg.spark.use_jar_cache is False
    assert cfg.spark.shuffle_partitions == 64
    cfg = load_config(TX, ["spark.shuffle_partitions=8"], environment="cluster")
    assert cfg.spark.shuffle_partitions == 8


def test_override_values_are_typed() -> None:
    assert parse_override("a.b=3") == {"a": {"b": 3}}
    assert parse_override("x=true") == {"x": True}
    assert parse_override("p=/tmp/a=b") == {"p": "/tmp/a=b"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["spark.shufle_partitions=2"], "unknown config key 'spark.shufle_partitions'"),
        (["nonsense=1"], "unknown config key 'nonsense'"),
        (["spark.shuffle_partitions=abc"], "bad value for config key 'spark.shuffle_partitions'"),
        (["generate.days=0"], "bad value for config key 'generate.days'"),
        # The sensor generator's episode rule is checked when the config loads.
        (["generate.sensors.failure_hours=9"], "failure_hours must be <= degradation_hours"),
        (["scoring.detectors=[{name: x, threshold: {policy: magic}}]"], "scoring.detectors.0"),
        (["dataset=no-dashes"], "bad value for config key 'dataset'"),
        (["oops"], "--set expects key=value"),
    ],
)
def test_bad_config_names_the_key(override: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(TX, override)


def test_unknown_environment_and_missing_file() -> None:
    with pytest.raises(ConfigError, match="unknown environment 'moon'"):
        load_config(TX, environment="moon")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(ROOT / "conf" / "nope.yaml")


def test_job_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = generate.main(["--config", str(TX), "--set", "spark.nope=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == "lakehound generate: ConfigError: unknown config key 'spark.nope'"


def test_bad_date_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert generate.main(["--config", str(TX), "--date", "2024-13-01"]) == 2
    assert "--date must be YYYY-MM-DD" in capsys.readouterr().err
