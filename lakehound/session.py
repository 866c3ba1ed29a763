"""The one SparkSession builder of the project.

Every job, test and notebook gets its session here, so Delta, the jar cache, UTC,
Arrow and the small-machine sizing are set in exactly one place.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from lakehound import jars
from lakehound.config import SparkSettings


def launched_by_spark_submit() -> bool:
    # spark-submit starts the JVM first and hands Python the gateway port.
    return "PYSPARK_GATEWAY_PORT" in os.environ


LOOPBACK = "127.0.0.1"


def local_ip() -> str:
    """The address the driver binds to when LakeHound starts the JVM: ``SPARK_LOCAL_IP``
    if set, else loopback. Spark's own default is the machine's external interface,
    which exposes the driver, block manager and UI ports (no authentication) to the
    network; a driver that executors on other hosts must reach sets
    ``SPARK_LOCAL_IP`` or ``spark.conf`` (``spark.driver.host``/``bindAddress``)."""
    return os.environ.get("SPARK_LOCAL_IP") or LOOPBACK


def session_conf(settings: SparkSettings) -> dict[str, str]:
    """The Spark conf LakeHound runs with, before the user's ``spark.conf`` overrides."""
    conf = {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(settings.arrow_batch_size),
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.default.parallelism": str(settings.shuffle_partitions),
        # Delta replays its log with 50 partitions by default: far too many for 2 cores.
        "spark.databricks.delta.snapshotPartitions": "2",
        # Catalyst's constraint propagation multiplies the constraints of every aliased
        # expression through each Project and Join. On the scoring plans (hundreds of
        # feature expressions, Python UDFs, structs) it can take the optimiser minutes
        # and the whole driver heap: a replayed micro-batch's alerts MERGE spent 3 min in
        # InferFiltersFromConstraints and died of OutOfMemoryError with a 1 GB driver.
        # Spark documents this switch for such plans. The price is the filters it would
        # have inferred (IsNotNull on join keys and the like), which only save work.
        "spark.sql.constraintPropagation.enabled": "false",
        "spark.sql.adaptive.enabled": "true",
        # Spark cannot read Parquet TIMESTAMP(NANOS) (pandas' default for to_parquet):
        # it fails the whole read. Read as nanoseconds since the epoch instead; the
        # validation reader turns a contract's timestamp columns back into timestamps.
        "spark.sql.legacy.parquet.nanosAsLong": "true",
        "spark.ui.enabled": str(settings.ui_enabled).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": settings.driver_memory,
        "spark.sql.warehouse.dir": str(Path(settings.warehouse_dir).resolve()),
        "spark.sql.catalogImplementation": settings.catalog,
    }
    if settings.catalog == "hive":
        # A local Derby metastore next to the warehouse, so registrations persist.
        conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = (
            f"jdbc:derby:;databaseName={Path(settings.warehouse_dir).resolve()}/metastore_db;"
            "create=true"
        )
    if settings.use_jar_cache:
        conf["spark.jars"] = ",".join(jars.jar_paths("spark"))
    if not launched_by_spark_submit():
        conf["spark.driver.bindAddress"] = local_ip()
        conf["spark.driver.host"] = local_ip()
    conf.update(settings.conf)
    return conf


def build_session(settings: SparkSettings, app_name: str | None = None) -> SparkSession:
    """Build (or return the running) SparkSession configured from ``settings``.

    Under ``spark-submit`` the deployment (master, jars on the driver classpath) is
    owned by spark-submit, so the config's master is only applied when LakeHound
    starts the JVM itself.
    """
    # Executors on this machine must run the same interpreter (the project venv).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # pandas-on-Spark (imported by pyspark.testing) asks for this with pyarrow >= 2.
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
    if not launched_by_spark_submit():
        # The Spark UI binds to SPARK_LOCAL_IP (no conf key for it); the JVM started
        # below inherits this environment.
        os.environ["SPARK_LOCAL_IP"] = local_ip()
    builder = SparkSession.builder.appName(app_name or settings.app_name)
    if not launched_by_spark_submit():
        builder = builder.master(settings.master)
    for key, value in session_conf(settings).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(settings.log_level)
    return spark
