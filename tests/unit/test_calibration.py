"""Severity calibration: the empirical CDF in the body, a fitted tail that still ranks."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from udfs.calibration import Calibrator

RNG = np.random.default_rng(11)
TRAIN = {
    "exponential": RNG.exponential(size=4000),
    "pareto": RNG.pareto(2.0, size=4000),
    "bounded": RNG.beta(2.0, 5.0, size=4000),
}


@pytest.mark.parametrize("name", sorted(TRAIN))
def test_body_is_the_training_percentile(name: str) -> None:
    s = TRAIN[name]
    cal = Calibrator().fit(s)
    x = np.quantile(s, [0.1, 0.5, 0.9, 0.98])
    # Fraction of training scores at or below x, in percent: counted, not interpolated.
    expected = [100.0 * np.mean(s <= v) for v in x]
    np.testing.assert_allclose(cal.severity(x), expected, atol=0.15)
    assert cal.severity(np.array([np.quantile(s, 0.99)]))[0] == pytest.approx(99.0)


@pytest.mark.parametrize("name", sorted(TRAIN))
def test_tail_ranks_past_the_training_range(name: str) -> None:
    s = TRAIN[name]
    cal = Calibrator().fit(s)
    # The top 1% of a test set holding scores far beyond the training maximum.
    beyond = s.max() * np.array([1.0, 1.001, 1.01, 1.1, 2.0, 10.0, 1e3, 1e6])
    test = np.concatenate([RNG.choice(s, 800), beyond])
    sev = cal.severity(test)
    assert np.all((sev >= 0.0) & (sev < 100.0))
    order = np.argsort(test, kind="stable")
    assert np.all(np.diff(sev[order]) >= 0.0), "severity must not decrease with the raw score"
    top = np.sort(np.unique(test))[-max(1, len(test) // 100) :]
    assert len(np.unique(cal.severity(top))) == len(top), "ties among distinct top-1% scores"
    b = cal.severity(beyond)
    assert np.all(np.diff(b) > 0) and b[0] > 99.0 and b[-1] < 100.0


def test_tail_is_continuous_at_the_99th_percentile() -> None:
    s = TRAIN["exponential"]
    cal = Calibrator().fit(s)
    q99 = float(cal.quantiles_[990])
    eps = 1e-9 * max(1.0, abs(q99))
    below, at, above = cal.severity(np.array([q99 - eps, q99, q99 + eps]))
    assert at == pytest.approx(99.0)
    assert 98.99 < below <= at <= above < 99.0 + 1e-6


def test_tail_reading_is_a_tail_probability() -> None:
    # For an exponential training tail, 99.5 is where the tail probability is
    # 1% / e: the score q99 + 1 (unit mean excess) for the unit exponential.
    s = np.random.default_rng(5).exponential(size=200_000)
    cal = Calibrator().fit(s)
    q99 = float(cal.quantiles_[990])
    assert cal.severity(np.array([q99 + 1.0]))[0] == pytest.approx(99.5, abs=0.02)
    tail = cal.tail()
    assert tail.shape < 0.05 and tail.scale == pytest.approx(1.0, rel=0.05)


def test_degenerate_and_missing() -> None:
    cal = Calibrator().fit(np.ones(50))
    sev = cal.severity(np.array([0.5, 1.0, 1.5, 2.0, np.nan]))
    assert sev[0] == sev[1] == 0.0
    assert 99.0 < sev[2] < sev[3] < 100.0
    assert np.isnan(sev[4])
    with pytest.raises(ValueError, match="zero finite"):
        Calibrator().fit(np.array([np.nan, np.inf]))


def test_a_calibrator_pickled_without_a_tail_gets_one() -> None:
    # Bundles trained before the tail stored only quantiles_: the tail is then
    # fitted on those, close to the one fitted on the training scores.
    cal = Calibrator().fit(TRAIN["exponential"])
    old = pickle.loads(pickle.dumps(cal))
    del old.tail_
    x = TRAIN["exponential"].max() * np.array([1.0, 1.5, 3.0])
    new_sev, old_sev = cal.severity(x), old.severity(x)
    assert np.all(np.diff(old_sev) > 0) and np.all(old_sev > 99.0)
    np.testing.assert_allclose(old_sev, new_sev, atol=0.05)
