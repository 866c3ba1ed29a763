"""The model registry: artifacts on lakehouse storage plus the Delta ``models`` table.

An artifact is a directory written once at ``<lakehouse>/<dataset>/_models/
<detector>/<version>/`` (``model.pkl`` for a Python bundle, a Spark ML pipeline
plus ``meta.json`` for a JVM engine). Its checksum (SHA-256 over every file's
relative path and content) is recorded in ``<dataset>.models`` together with its
lineage (feature list, feature-registry version, training table and its Delta
version). Loading verifies the checksum first and refuses anything else, so
nothing the registry does not vouch for is unpickled or loaded.

The registry records an artifact's path relative to ``<lakehouse>/<dataset>``, so a
copied or restored lakehouse loads (and checks) its own artifacts. A training run's
models are recorded in one Delta commit: all of them or, after a crash, none.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F

from lakehound import io
from lakehound.config import Config
from lakehound.errors import ModelError

if TYPE_CHECKING:
    from udfs.bundle import ModelBundle

MODELS = "models"
STATUSES = ("candidate", "production", "archived")
MODELS_SCHEMA = (
    "version string, detector string, params string, features array<string>, "
    "feature_registry_version string, training_table string, training_table_version long, "
    "training_dates string, metrics map<string,double>, artifact_path string, "
    "artifact_sha256 string, status string, created_at timestamp"
)


def artifact_digest(root: Path) -> str:
    """SHA-256 over the relative path and content of every file under ``root``."""
    if not root.is_dir():
        raise FileNotFoundError(root)
    digest = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(str(f.relative_to(root)).encode())
        digest.update(hashlib.sha256(f.read_bytes()).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class RegisteredModel:
    version: str
    detector: str
    features: list[str]
    artifact_path: str
    sha256: str
    status: str
    # Lineage, for drift (the training window) and evaluation reports.
    training_table: str = ""
    training_table_version: int = -1
    training_dates: str = ""
    metrics: dict[str, float] | None = None
    feature_registry_version: str = ""

    def check_features(self, registry_version: str) -> None:
        """Refuse a model trained on other feature definitions than the code's."""
        if self.feature_registry_version and self.feature_registry_version != registry_version:
            raise ModelError(
                f"model {self.detector} version {self.version} was trained on feature "
                f"registry {self.feature_registry_version}, the code defines "
                f"{registry_version}: retrain it (jobs/train.py) before scoring"
            )

    def verified_dir(self) -> Path:
        """The artifact directory, only if its content matches the registered checksum."""
        root = Path(self.artifact_path)
        try:
            digest = artifact_digest(root)
        except FileNotFoundError:
            raise ModelError(
                f"model {self.detector} version {self.version}: artifact missing at {root}"
            ) from None
        if digest != self.sha256:
            raise ModelError(
                f"model {self.detector} version {self.version}: artifact {root} has checksum "
                f"{digest[:12]}..., registry recorded {self.sha256[:12]}...; refusing to load"
            )
        return root

    def read_verified(self) -> bytes:
        """The pickled Python bundle's bytes, after the checksum check."""
        path = self.verified_dir() / "model.pkl"
        if not path.exists():
            raise ModelError(f"model {self.detector} version {self.version}: no {path}")
        return path.read_bytes()

    def load(self) -> ModelBundle:
        from udfs.bundle import ModelBundle

        bundle = pickle.loads(self.read_verified())
        if not isinstance(bundle, ModelBundle):
            raise ModelError(
                f"model {self.detector} version {self.version}: artifact {self.artifact_path} "
                "is not a LakeHound model bundle"
            )
        return bundle


def new_version(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("v%Y%m%dT%H%M%S%fZ")


@dataclass(frozen=True)
class Lineage:
    feature_registry_version: str
    training_table: str
    training_table_version: int
    training_dates: str


ARTIFACTS = "_models"


def artifact_location(cfg: Config, stored: str) -> str:
    """The artifact directory of a registry row, in this config's lakehouse.

    Rows hold ``_models/<detector>/<version>``. Rows registered before paths were
    relative hold an absolute path: its ``_models/...`` part is re-anchored here too,
    so a copy of an older lakehouse never reads the original's artifacts.
    """
    marker = f"/{ARTIFACTS}/"
    if stored.startswith(f"{ARTIFACTS}/"):
        relative = stored
    elif marker in stored:
        relative = stored[stored.rindex(marker) + 1 :]
    else:
        return stored
    return io.table_path(cfg, relative)


@dataclass(frozen=True)
class PendingModel:
    """An artifact written and checksummed, its registry row not committed yet."""

    row: Row
    model: RegisteredModel


def write_artifact(
    cfg: Config,
    *,
    detector: str,
    version: str,
    params: dict[str, Any],
    features: list[str],
    metrics: dict[str, float],
    write: Callable[[Path], None],
    lineage: Lineage,
    status: str = "production",
) -> PendingModel:
    """Write an artifact directory with ``write`` and checksum it; nothing is recorded
    until :func:`commit` (an artifact without a registry row is never loaded)."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    relative = f"{ARTIFACTS}/{detector}/{version}"
    root = Path(io.table_path(cfg, relative))
    root.mkdir(parents=True, exist_ok=True)
    write(root)
    sha = artifact_digest(root)
    row = Row(
        version=version,
        detector=detector,
        params=json.dumps(params, sort_keys=True, default=str),
        features=features,
        feature_registry_version=lineage.feature_registry_version,
        training_table=lineage.training_table,
        training_table_version=lineage.training_table_version,
        training_dates=lineage.training_dates,
        metrics={k: float(v) for k, v in metrics.items()},
        artifact_path=relative,
        artifact_sha256=sha,
        status=status,
        created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
    )
    model = RegisteredModel(
        version, detector, features, str(root), sha, status,
        feature_registry_version=lineage.feature_registry_version,
    )  # fmt: skip
    return PendingModel(row, model)


def commit(spark: SparkSession, cfg: Config, pending: list[PendingModel]) -> None:
    """Record every pending model in one Delta commit: all of them or none.

    Each production model archives the previous production version of its detector;
    the archiving and the new rows are one MERGE, so no reader ever sees a detector
    with two production versions, or with none, or half of a training run.
    """
    if not pending:
        return
    rows = spark.createDataFrame([p.row for p in pending], MODELS_SCHEMA)
    if not io.table_exists(spark, cfg, MODELS):
        io.append(rows, cfg, MODELS)
        return
    from delta.tables import DeltaTable

    promoted = sorted({p.model.detector for p in pending if p.model.status == "production"})
    # Source rows: the new rows to insert, plus one "archive" row per detector whose
    # production row (in the target) is to be archived. One source row may update
    # several target rows; no target row is matched twice.
    inserts = rows.withColumn("_op", F.lit("insert"))
    archives = spark.createDataFrame([(d,) for d in promoted], "detector string").withColumn(
        "_op", F.lit("archive")
    )
    source = inserts.unionByName(archives, allowMissingColumns=True)
    columns = [c.split()[0] for c in MODELS_SCHEMA.split(", ")]
    (
        DeltaTable.forPath(spark, io.table_path(cfg, MODELS))
        .alias("t")
        .merge(
            source.alias("s"),
            "s._op = 'archive' AND t.detector = s.detector AND t.status = 'production'",
        )
        .whenMatchedUpdate(set={"status": F.lit("archived")})
        .whenNotMatchedInsert(
            condition="s._op = 'insert'", values={c: F.col(f"s.{c}") for c in columns}
        )
        .execute()
    )


def register_artifact(
    spark: SparkSession,
    cfg: Config,
    *,
    detector: str,
    version: str,
    params: dict[str, Any],
    features: list[str],
    metrics: dict[str, float],
    write: Callable[[Path], None],
    lineage: Lineage,
    status: str = "production",
) -> RegisteredModel:
    """Write an artifact directory with ``write``, checksum it, record it (one model).

    Registering a production model archives the previous production version of the
    same detector; a candidate leaves production alone until it is promoted.
    """
    pending = write_artifact(
        cfg, detector=detector, version=version, params=params, features=features,
        metrics=metrics, write=write, lineage=lineage, status=status,
    )  # fmt: skip
    commit(spark, cfg, [pending])
    return pending.model


def register(
    spark: SparkSession, cfg: Config, bundle: ModelBundle, lineage: Lineage,
    status: str = "production",
) -> RegisteredModel:  # fmt: skip
    """Register a Python :class:`ModelBundle` (pickled as ``model.pkl``)."""
    pending = write_bundle(cfg, bundle, lineage, status)
    commit(spark, cfg, [pending])
    return pending.model


def write_bundle(
    cfg: Config, bundle: ModelBundle, lineage: Lineage, status: str = "production"
) -> PendingModel:
    """Write a Python :class:`ModelBundle`'s artifact; :func:`commit` records it."""
    payload = pickle.dumps(bundle, protocol=pickle.HIGHEST_PROTOCOL)
    return write_artifact(
        cfg,
        detector=bundle.detector_name,
        version=bundle.version,
        params=bundle.params,
        features=bundle.features,
        metrics=bundle.metrics,
        write=lambda root: _write_bytes(root / "model.pkl", payload),
        lineage=lineage,
        status=status,
    )


def resolve(
    spark: SparkSession, cfg: Config, detector: str, version: str | None = None
) -> RegisteredModel:
    """The production model of ``detector``, or the pinned ``version``."""
    if not io.table_exists(spark, cfg, MODELS):
        raise ModelError(f"no model registry at {io.table_path(cfg, MODELS)}; run jobs/train.py")
    models = io.read_table(spark, cfg, MODELS).where(F.col("detector") == detector)
    if version:
        models = models.where(F.col("version") == version)
    else:
        models = models.where(F.col("status") == "production")
    rows = models.orderBy(F.col("created_at").desc()).limit(1).collect()
    if not rows:
        what = f"version {version}" if version else "a production version"
        raise ModelError(f"registry has no {what} of detector '{detector}'")
    return _from_row(cfg, rows[0])


def _from_row(cfg: Config, r: Row) -> RegisteredModel:
    return RegisteredModel(
        r["version"], r["detector"], list(r["features"]), artifact_location(cfg, r["artifact_path"]),
        r["artifact_sha256"], r["status"], r["training_table"],
        int(r["training_table_version"]), r["training_dates"], dict(r["metrics"] or {}),
        r["feature_registry_version"] or "",
    )  # fmt: skip


def has_production(spark: SparkSession, cfg: Config, detector: str) -> bool:
    if not io.table_exists(spark, cfg, MODELS):
        return False
    models = io.read_table(spark, cfg, MODELS)
    return bool(
        models.where((F.col("detector") == detector) & (F.col("status") == "production"))
        .limit(1)
        .count()
    )


def candidates(spark: SparkSession, cfg: Config, detector: str) -> list[RegisteredModel]:
    """Candidate versions of ``detector``, newest first."""
    if not io.table_exists(spark, cfg, MODELS):
        return []
    rows = (
        io.read_table(spark, cfg, MODELS)
        .where((F.col("detector") == detector) & (F.col("status") == "candidate"))
        .orderBy(F.col("created_at").desc())
        .collect()
    )
    return [_from_row(cfg, r) for r in rows]


def set_status(spark: SparkSession, cfg: Config, detector: str, version: str, status: str) -> None:
    """Move one version to ``status``; promoting to production archives the previous one."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    resolve(spark, cfg, detector, version)  # ModelError (exit 5) for an unknown version
    from delta.tables import DeltaTable

    table = DeltaTable.forPath(spark, io.table_path(cfg, MODELS))
    this = (F.col("detector") == detector) & (F.col("version") == version)
    if status == "production":
        table.update(
            (F.col("detector") == detector) & (F.col("status") == "production") & ~this,
            {"status": F.lit("archived")},
        )
    table.update(this, {"status": F.lit(status)})


def _write_bytes(path: Path, payload: bytes) -> None:
    path.write_bytes(payload)
