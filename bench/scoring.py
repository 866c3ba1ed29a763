"""Scoring benchmark: the pandas-UDF Isolation Forest against its alternatives, per core.

Same rows (synthetic, ``FEATURES`` Gaussian columns with a few shifted outliers) and
the same fitted forest (100 trees, 256 samples) for every contender; each
repetition measures all contenders back to back, and ratios are medians of the
per-repetition ratios:

* ``sklearn``: ``IsolationForest.score_samples`` on the in-memory numpy array, one
  process, one thread (the per-core ceiling);
* ``spark_udf``: LakeHound's path, ``udfs.scoring.score_column`` (broadcast bundle,
  iterator pandas UDF: score + calibrated severity + threshold + explanations of
  flagged rows) over a Parquet file on ``local[1]``, forced with the ``noop`` sink,
  with the project's Arrow batch size (``spark.arrow_batch_size``);
* ``spark_udf_bare``: a pandas UDF that only calls ``score_samples`` (where the
  time goes: Spark + Arrow vs the bundle's own work);
* ``synapseml``: SynapseML's JVM Isolation Forest through ``lakehound.engines.synapseml``
  on the same Parquet file and ``local[1]``;
* ``pandas_e2e`` vs ``spark_e2e``: read Parquet -> score with the bundle -> write
  Parquet, as a single pandas + scikit-learn process would, and as Spark does;
* ``bundle``: ``ModelBundle.score_arrays`` (what the UDF runs per Arrow batch) in
  this process over batches of ``spark.arrow_batch_size`` rows, no Spark: the
  bundle's own cost next to ``score_samples``.

With ``spark: false`` (the CI smoke) only the in-process contenders run (no JVM).

``local[1]`` runs one task at a time, but the JVM still reads Parquet and converts
to Arrow on its own threads next to the Python worker, so the Spark side can use
somewhat more than one core of the machine.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import emit, median, paired_ratio, spark_overrides, timed, worker_args
from lakehound.config import ThresholdSettings, load_config
from udfs.bundle import ModelBundle
from udfs.calibration import Threshold

FEATURES = [f"f{i}" for i in range(8)]
TRAIN_ROWS = 50_000


def make_rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES)))
    out = rng.random(n) < 0.01
    X[out] += rng.normal(6.0, 1.0, size=(int(out.sum()), len(FEATURES)))
    return pd.DataFrame(X, columns=FEATURES)


def _bare_udf(forest: Any) -> Any:
    """A scalar pandas UDF calling score_samples and nothing else (the forest travels
    in the UDF's closure, pickled once per task)."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("double")  # type: ignore[call-overload]
    def _score(*cols: pd.Series) -> pd.Series:
        X = np.column_stack([c.to_numpy(dtype=np.float64) for c in cols])
        return pd.Series(-forest.score_samples(X))

    return _score


def _in_process(bundle: ModelBundle, X: np.ndarray, batch: int) -> None:
    for i in range(0, X.shape[0], batch):
        bundle.score_arrays(X[i : i + batch], top_k=3)


def run(params: dict[str, Any]) -> dict[str, Any]:
    rows, reps = int(params["rows"]), int(params["reps"])
    with_spark = bool(params.get("spark", True))
    with_synapseml = with_spark and bool(params.get("synapseml", True))
    work = Path(params.get("workdir") or tempfile.mkdtemp(prefix="lakehound-bench-scoring-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = make_rows(rows)
    src = work / "rows.parquet"
    data.to_parquet(src, index=False, row_group_size=100_000)
    X = data.to_numpy(dtype=np.float64)

    train = X[: min(TRAIN_ROWS, rows)]
    bundle = ModelBundle.fit(
        "isolation_forest",
        {"n_estimators": 100, "max_samples": 256, "random_state": 0},
        FEATURES,
        train,
        Threshold("contamination", 0.01),
    )
    payload = pickle.dumps(bundle)
    sha = hashlib.sha256(payload).hexdigest()
    forest = bundle.detector.model_  # type: ignore[attr-defined]

    cfg = load_config("conf/transactions.yaml", spark_overrides("local[1]", 1))
    arrow_batch = cfg.spark.arrow_batch_size
    if not with_spark:
        return _run_in_process(rows, reps, bundle, X, forest, src, work, arrow_batch)
    # Spark, SynapseML and py4j only when measured: the smoke (no JVM) starts in seconds.
    from lakehound.engines import synapseml
    from lakehound.session import build_session
    from udfs.scoring import score_column

    spark = build_session(cfg.spark, app_name="lakehound-bench-scoring")
    df = spark.read.parquet(str(src))
    udf_plan = df.select(score_column(df, payload, sha, FEATURES, top_k=3).alias("s"))
    bare_plan = df.select(_bare_udf(forest)(*[df[c] for c in FEATURES]).alias("s"))
    jvm = None
    if with_synapseml:
        train_df = spark.createDataFrame(pd.DataFrame(train, columns=FEATURES))
        model, meta = synapseml.fit(
            train_df,
            "synapseml_isolation_forest",
            FEATURES,
            # The engine's defaults (randomSeed 1: SynapseML 1.1.3 rejects 0).
            {},
            ThresholdSettings(policy="contamination", value=0.01),
        )
        scored, struct = synapseml.score_struct(df, model, meta, top_k=3)
        jvm = scored.select(struct.alias("s"))

    def noop(plan: Any) -> None:
        plan.write.format("noop").mode("overwrite").save()

    def pandas_e2e() -> None:
        _pandas_e2e(bundle, src, work)

    def spark_e2e() -> None:
        udf_plan.select("s.raw_score", "s.severity", "s.is_anomaly").write.mode(
            "overwrite"
        ).parquet(str(work / "spark_out"))

    # Warm-up: JVM JIT, Python worker start, broadcast, model unpickling. A full
    # pass, not a few rows: the first full pass ran ~50% slower than the next ones
    # (the JIT compiles the Arrow and Parquet paths only once they are hot).
    noop(udf_plan)
    noop(bare_plan)
    if jvm is not None:
        noop(jvm.limit(1000))
    times: dict[str, list[float]] = {
        k: []
        for k in [
            "sklearn",
            "bundle",
            "spark_udf",
            "spark_udf_bare",
            "synapseml",
            "pandas_e2e",
            "spark_e2e",
        ]
    }
    for _ in range(reps):
        times["sklearn"].append(timed(lambda: forest.score_samples(X))[0])
        times["bundle"].append(timed(lambda: _in_process(bundle, X, arrow_batch))[0])
        times["spark_udf"].append(timed(lambda: noop(udf_plan))[0])
        times["spark_udf_bare"].append(timed(lambda: noop(bare_plan))[0])
        if jvm is not None:
            times["synapseml"].append(timed(lambda: noop(jvm))[0])
        times["pandas_e2e"].append(timed(pandas_e2e)[0])
        times["spark_e2e"].append(timed(spark_e2e)[0])
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)
    seconds = {k: median(v) for k, v in times.items() if v}
    result: dict[str, Any] = {
        "rows": rows,
        "features": len(FEATURES),
        "reps": reps,
        "arrow_batch_size": arrow_batch,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "rows_per_second": {k: round(rows / v, 1) for k, v in seconds.items() if v > 0},
        # Throughput ratios (higher = the first named is faster).
        "udf_vs_sklearn": round(paired_ratio(times["sklearn"], times["spark_udf"]), 3),
        "bundle_vs_sklearn": round(paired_ratio(times["sklearn"], times["bundle"]), 3),
        # Only score_samples inside the UDF: what Spark + Arrow cost, without the
        # bundle's calibration, thresholding and explanations.
        "bare_udf_vs_sklearn": round(paired_ratio(times["sklearn"], times["spark_udf_bare"]), 3),
        "spark_e2e_vs_pandas_e2e": round(paired_ratio(times["pandas_e2e"], times["spark_e2e"]), 3),
        "repetitions": times,
    }
    if times["synapseml"]:
        result["synapseml_vs_udf"] = round(paired_ratio(times["spark_udf"], times["synapseml"]), 3)
    return result


def _pandas_e2e(bundle: ModelBundle, src: Path, work: Path) -> None:
    frame = pd.read_parquet(src)
    out = bundle.score(frame[FEATURES].to_numpy(dtype=np.float64), top_k=3)
    pd.DataFrame(
        {"raw_score": out.raw, "severity": out.severity, "is_anomaly": out.is_anomaly}
    ).to_parquet(work / "pandas_out.parquet", index=False)


def _run_in_process(
    rows: int,
    reps: int,
    bundle: ModelBundle,
    X: np.ndarray,
    forest: Any,
    src: Path,
    work: Path,
    arrow_batch: int,
) -> dict[str, Any]:
    """The no-JVM subset: scikit-learn, the bundle, the pandas end to end."""
    times: dict[str, list[float]] = {"sklearn": [], "bundle": [], "pandas_e2e": []}
    for _ in range(reps):
        times["sklearn"].append(timed(lambda: forest.score_samples(X))[0])
        times["bundle"].append(timed(lambda: _in_process(bundle, X, arrow_batch))[0])
        times["pandas_e2e"].append(timed(lambda: _pandas_e2e(bundle, src, work))[0])
    shutil.rmtree(work, ignore_errors=True)
    seconds = {k: median(v) for k, v in times.items()}
    return {
        "rows": rows,
        "features": len(FEATURES),
        "reps": reps,
        "arrow_batch_size": arrow_batch,
        "spark": False,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "rows_per_second": {k: round(rows / v, 1) for k, v in seconds.items() if v > 0},
        "bundle_vs_sklearn": round(paired_ratio(times["sklearn"], times["bundle"]), 3),
        "repetitions": times,
    }


if __name__ == "__main__":
    emit(run(worker_args()))
