"""Model registry: lineage rows, production/archived status, checksum refusal."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehound import io, models
from lakehound.config import Config
from lakehound.errors import ModelError

LINEAGE = models.Lineage("fr-1", "transactions.features", 3, "2024-01-01..2024-01-07")


def _register(spark: SparkSession, cfg: Config, version: str, text: str) -> models.RegisteredModel:
    return models.register_artifact(
        spark,
        cfg,
        detector="isolation_forest",
        version=version,
        params={"n_estimators": 10},
        features=["a", "b"],
        metrics={"train_rows": 5.0},
        write=lambda root: (root / "model.pkl").write_text(text),
        lineage=LINEAGE,
    )


def test_checksum_is_over_paths_and_content(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"abc")
    expected = hashlib.sha256()
    expected.update(b"x")
    expected.update(hashlib.sha256(b"abc").digest())
    assert models.artifact_digest(tmp_path) == expected.hexdigest()


def test_register_records_lineage_and_archives_previous(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg()
    first = _register(spark, cfg, "v1", "one")
    second = _register(spark, cfg, "v2", "two")
    rows = {r["version"]: r for r in io.read_table(spark, cfg, "models").collect()}
    assert rows["v1"]["status"] == "archived" and rows["v2"]["status"] == "production"
    assert rows["v2"]["training_table_version"] == 3
    assert rows["v2"]["features"] == ["a", "b"]
    assert models.resolve(spark, cfg, "isolation_forest").version == "v2"
    assert models.resolve(spark, cfg, "isolation_forest", "v1").sha256 == first.sha256
    assert second.read_verified() == b"two"


def test_tampered_or_missing_artifact_is_refused(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg()
    reg = _register(spark, cfg, "v1", "genuine")
    (Path(reg.artifact_path) / "model.pkl").write_text("evil")
    with pytest.raises(ModelError, match=r"version v1: artifact .* has checksum .* refusing"):
        reg.read_verified()
    (Path(reg.artifact_path) / "model.pkl").unlink()
    with pytest.raises(ModelError) as err:
        reg.read_verified()
    assert err.value.exit_code == 5


def test_unknown_version_and_empty_registry(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg()
    with pytest.raises(ModelError, match="no model registry"):
        models.resolve(spark, cfg, "isolation_forest")
    _register(spark, cfg, "v1", "x")
    with pytest.raises(ModelError, match="no version v9 of detector 'isolation_forest'"):
        models.resolve(spark, cfg, "isolation_forest", "v9")


def test_candidate_waits_for_promotion(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg()
    assert not models.has_production(spark, cfg, "isolation_forest")
    _register(spark, cfg, "v1", "one")
    cand = models.register_artifact(
        spark, cfg, detector="isolation_forest", version="v2", params={}, features=["a"],
        metrics={}, write=lambda root: (root / "model.pkl").write_text("two"), lineage=LINEAGE,
        status="candidate",
    )  # fmt: skip
    # A candidate leaves production alone and is not what scoring resolves.
    assert models.resolve(spark, cfg, "isolation_forest").version == "v1"
    assert [c.version for c in models.candidates(spark, cfg, "isolation_forest")] == ["v2"]
    assert cand.training_dates == "" and cand.status == "candidate"
    models.set_status(spark, cfg, "isolation_forest", "v2", "production")
    prod = models.resolve(spark, cfg, "isolation_forest")
    assert prod.version == "v2" and prod.training_dates == "2024-01-01..2024-01-07"
    assert models.resolve(spark, cfg, "isolation_forest", "v1").status == "archived"
    assert models.candidates(spark, cfg, "isolation_forest") == []
    with pytest.raises(ModelError, match="no version v7"):
        models.set_status(spark, cfg, "isolation_forest", "v7", "production")
    with pytest.raises(ValueError, match="status must be one of"):
        models.set_status(spark, cfg, "isolation_forest", "v1", "retired")


def test_model_of_other_feature_definitions_is_refused(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg()
    _register(spark, cfg, "v1", "one")
    reg = models.resolve(spark, cfg, "isolation_forest")
    assert reg.feature_registry_version == "fr-1"
    reg.check_features("fr-1")
    with pytest.raises(ModelError, match=r"trained on feature registry fr-1.*defines fr-2"):
        reg.check_features("fr-2")
