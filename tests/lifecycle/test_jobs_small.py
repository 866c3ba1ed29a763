"""The lifecycle jobs on small hand-made Delta tables, with expected values from numpy,
scikit-learn and scipy."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import SparkSession
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from jobs import drift, evaluate, feedback, promote, score, train
from lakehound import io, models
from lakehound.cli import RunContext
from lakehound.config import Config

pytestmark = pytest.mark.slow

D1, D2, D3 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)
FEATURES = (
    "event_id string, entity_id string, event_ts timestamp, event_date date, a double, b double"
)


def _features(
    spark: SparkSession, cfg: Config, a: np.ndarray, b: np.ndarray, days: list[dt.date]
) -> None:
    rows = []
    per_day = len(a) // len(days)
    for i, (x, z) in enumerate(zip(a, b, strict=True)):
        day = days[min(i // per_day, len(days) - 1)]
        ts = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=i)
        rows.append((f"e{i}", f"c{i % 7}", ts, day, float(x), float(z)))
    io.replace_dates(spark.createDataFrame(rows, FEATURES), cfg, "features", days)


def _cfg(make_cfg: Callable[..., Config], *extra: str) -> Config:
    return make_cfg(
        "transactions",
        "scoring.detectors=[{name: zscore, features: [a, b], threshold: {policy: contamination, value: 0.1}}]",
        "train.train_days=7",
        *extra,
    )


def test_training_excludes_confirmed_anomalies(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=60), rng.normal(size=60)
    a[55:] = 50.0  # the last five rows are anomalies the analysts confirm
    for tuned in ("true", "false"):
        cfg = _cfg(
            make_cfg, f"train.tuning.enabled={tuned}", f"lakehouse={make_cfg().lakehouse}/{tuned}"
        )
        _features(spark, cfg, a, b, [D1, D2])
        for i in range(55, 60):
            feedback.record(spark, cfg, f"e{i}", "true_positive", check_scored=False)
        feedback.record(spark, cfg, "e3", "false_positive", check_scored=False)
        (reg,) = train.run(spark, cfg, RunContext("train", None))
        bundle = reg.load()
        assert reg.status == "production"
        # The z-score centre is the mean of the 55 rows left, computed here with numpy.
        assert bundle.detector.center_ == pytest.approx([a[:55].mean(), b[:55].mean()])  # type: ignore[attr-defined]
        assert bundle.metrics["train_rows"] == 55
        assert bundle.metrics.get("tuned", 0.0) == (1.0 if tuned == "true" else 0.0)


def test_feedback_cli_validates_and_upserts(
    spark: SparkSession, make_cfg: Callable[..., Config], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _cfg(make_cfg)
    base = ["--config", "conf/transactions.yaml", "--set", f"lakehouse={cfg.lakehouse}"]
    assert feedback.main([*base, "--event-id", "e1", "--label", "maybe"]) == 2
    assert "true_positive" in capsys.readouterr().err
    io.append(
        spark.createDataFrame([("e1", "zscore")], "event_id string, detector string"), cfg, "scores"
    )
    assert feedback.main([*base, "--event-id", "nope", "--label", "true_positive"]) == 4
    assert "'nope' is not in transactions.scores" in capsys.readouterr().err
    assert (
        feedback.main([*base, "--event-id", "e1", "--label", "true_positive", "--analyst", "al"])
        == 0
    )
    assert (
        feedback.main([*base, "--event-id", "e1", "--label", "false_positive", "--analyst", "al"])
        == 0
    )
    rows = io.read_table(spark, cfg, "feedback").collect()
    assert [(r["event_id"], r["label"]) for r in rows] == [("e1", "false_positive")]
    # SQL INSERT works too (by path here: the test session's catalog is shared by tests
    # with different lakehouses), and the latest verdict wins.
    path = io.table_path(cfg, "feedback")
    spark.sql(
        f"INSERT INTO delta.`{path}` VALUES ('e1', 'true_positive', 'bob', '', current_timestamp())"
    )
    v = feedback.verdicts(spark, cfg)
    assert v is not None and [(r["event_id"], r["y"]) for r in v.collect()] == [("e1", 1)]


def test_evaluate_matches_scikit_learn_per_type(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = _cfg(make_cfg, "evaluation.precision_at_k=[2,5]")
    rng = np.random.default_rng(1)
    n = 40
    kinds = [None] * n
    y = np.zeros(n, int)
    for i in range(0, n, 5):
        y[i] = 1
        kinds[i] = "point" if i % 10 == 0 else "collective"
    raw = np.round(rng.normal(size=n) + 1.2 * y, 1)
    flagged = raw > 0.8
    days = [D1 if i < 20 else D2 for i in range(n)]
    sc = [(f"e{i}", days[i], "zscore", float(raw[i]), bool(flagged[i]), "v1") for i in range(n)]
    sc += [(f"e{i}", days[i], "ensemble", float(-raw[i]), False, "v1") for i in range(n)]
    io.replace_dates(
        spark.createDataFrame(sc, "event_id string, event_date date, detector string, raw_score double, is_anomaly boolean, model_version string"),
        cfg, "scores", [D1, D2],
    )  # fmt: skip
    lab = [(f"e{i}", bool(y[i]), kinds[i]) for i in range(n) if i != 39]  # e39 unlabelled = normal
    io.overwrite(
        spark.createDataFrame(
            lab, "transaction_id string, is_anomaly boolean, anomaly_type string"
        ),
        cfg,
        "labels",
    )

    res = evaluate.run(spark, cfg, RunContext("evaluate", None)).set_index(["detector", "segment"])
    z = res.loc[("zscore", "all")]
    assert z["pr_auc"] == pytest.approx(average_precision_score(y, raw))
    assert z["roc_auc"] == pytest.approx(roc_auc_score(y, raw))
    tp = int(np.sum(flagged & (y == 1)))
    assert (z["tp"], z["alerts"]) == (tp, flagged.sum())
    assert z["precision"] == pytest.approx(tp / flagged.sum())
    assert z["recall"] == pytest.approx(tp / y.sum())
    assert z["alerts_per_day"] == pytest.approx(flagged.sum() / 2)
    top5 = np.argsort(-raw, kind="mergesort")[:5]
    assert z["precision_at_k"]["5"] == pytest.approx(y[top5].mean())
    point = np.array([k in (None, "point") for k in kinds])
    p = res.loc[("zscore", "point")]
    assert p["pr_auc"] == pytest.approx(average_precision_score(y[point], raw[point]))
    assert p["rows"] == point.sum()
    assert res.loc[("ensemble", "all")]["roc_auc"] == pytest.approx(roc_auc_score(y, -raw))
    evaluate.run(spark, cfg, RunContext("evaluate", None))
    ev = io.read_table(spark, cfg, "evaluations")
    assert ev.count() == 6 and {r["event_date"] for r in ev.collect()} == {D2}


def test_promotion_needs_better_pr_auc(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    rng = np.random.default_rng(2)
    n = 400
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = np.zeros(n, bool)
    y[rng.choice(n, 12, replace=False)] = True
    a[y] += 8.0  # anomalies show in feature a only
    noisy = _cfg(make_cfg, "scoring.detectors=[{name: zscore, features: [b]}]")
    good = _cfg(make_cfg, "scoring.detectors=[{name: zscore, features: [a]}]")
    _features(spark, noisy, a, b, [D1, D2])
    lab = [(f"e{i}", bool(y[i]), "point" if y[i] else None) for i in range(n)]
    io.overwrite(
        spark.createDataFrame(
            lab, "transaction_id string, is_anomaly boolean, anomaly_type string"
        ),
        noisy,
        "labels",
    )

    first = train.run(spark, noisy, RunContext("train", None))[0]
    assert first.status == "production"
    cand = train.run(spark, good, RunContext("train", None))[0]
    assert cand.status == "candidate"
    (decision,) = promote.run(spark, good, RunContext("promote", None))
    assert decision.promote
    assert decision.candidate_pr_auc == pytest.approx(
        average_precision_score(y, np.abs(a - a[~y].mean()) / a[~y].std())
    )
    assert decision.production_pr_auc == pytest.approx(
        average_precision_score(y, np.abs(b - b[~y].mean()) / b[~y].std())
    )
    assert models.resolve(spark, good, "zscore").version == cand.version
    # The noisy model back as a candidate loses and is archived; production stays.
    worse = train.run(spark, noisy, RunContext("train", None))[0]
    (decision,) = promote.run(spark, noisy, RunContext("promote", None))
    assert not decision.promote
    assert models.resolve(spark, good, "zscore").version == cand.version
    assert models.resolve(spark, good, "zscore", worse.version).status == "archived"
    rec = {r["candidate_version"]: r for r in io.read_table(spark, good, "promotions").collect()}
    assert rec[cand.version]["promoted"] and not rec[worse.version]["promoted"]
    assert rec[worse.version]["production_version"] == cand.version


def test_tampered_production_model_exits_5_naming_version_and_path(
    spark: SparkSession, make_cfg: Callable[..., Config], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _cfg(make_cfg)
    rng = np.random.default_rng(3)
    _features(spark, cfg, rng.normal(size=30), rng.normal(size=30), [D1])
    (reg,) = train.run(spark, cfg, RunContext("train", None))
    (Path(reg.artifact_path) / "model.pkl").write_bytes(b"not the model")
    argv = [
        "--config", "conf/transactions.yaml", "--set", f"lakehouse={cfg.lakehouse}",
        "--set", "scoring.detectors=[{name: zscore, features: [a, b]}]",
    ]  # fmt: skip
    assert score.main(argv) == 5
    err = capsys.readouterr().err
    assert f"version {reg.version}" in err and reg.artifact_path in err
    assert score.main([*argv, "--set", "scoring.model_version=v0"]) == 5
    assert "no version v0 of detector 'zscore'" in capsys.readouterr().err


def test_drift_flags_a_shifted_feature(
    spark: SparkSession, make_cfg: Callable[..., Config]
) -> None:
    cfg = _cfg(make_cfg, "drift.recent_days=1")
    rng = np.random.default_rng(4)
    n = 900
    a, b = rng.normal(size=n), rng.normal(size=n)
    a[600:] += 2.0  # the third day is shifted in feature a, b is stationary
    _features(spark, cfg, a[:600], b[:600], [D1, D2])
    train.run(spark, cfg, RunContext("train", None))
    _features(spark, cfg, a[600:], b[600:], [D3])
    out = drift.run(spark, cfg, RunContext("drift", None))
    rows = {
        r["name"]: r for r in io.read_table(spark, cfg, "drift").collect() if r["kind"] == "feature"
    }
    assert rows["a"]["ks"] == pytest.approx(stats.ks_2samp(a[:600], a[600:]).statistic)
    assert rows["b"]["ks"] == pytest.approx(stats.ks_2samp(b[:600], b[600:]).statistic)
    assert rows["a"]["level"] == "significant" and rows["a"]["psi"] > 0.25
    assert rows["b"]["level"] == "stable"
    assert out["retrain_recommended"] and out["drifted"] == ["feature:a"]
    assert all(r["retrain_recommended"] for r in rows.values())
