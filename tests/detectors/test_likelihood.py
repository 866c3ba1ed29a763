"""The anomaly-likelihood and suppression stage, against values worked out independently."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from udfs.detectors.likelihood import TAIL_FLOOR, anomaly_likelihood, suppress
from udfs.detectors.registry import create


def test_suppress_keeps_only_rows_beating_the_previous_rest_rows() -> None:
    s = np.array([0.0, 1.0, 0.5, 2.0, 0.0, 0.0, 0.3])
    # Row 2 is below row 1, rows 4-5 below row 3; row 6 beats rows 4-5 (rest = 2).
    assert suppress(s, 2).tolist() == [0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 0.3]
    assert suppress(s, 0).tolist() == s.tolist()


def test_likelihood_is_the_gaussian_tail_of_the_recent_score() -> None:
    raw = np.tile([0.0, 2.0], 100)  # past mean 1, past sd ~1.0025 (ddof 1)
    raw = np.append(raw, 6.0)
    got = anomaly_likelihood(raw, learn=50, short=1, long=1000)
    past = raw[:-1]
    z = (6.0 - past.mean()) / past.std(ddof=1)
    expected = np.log(norm.sf(z) + TAIL_FLOOR) / np.log(TAIL_FLOOR)
    assert got[-1] == pytest.approx(expected, rel=1e-9)
    assert 0.6 < got[-1] < 0.7  # z ~ 5: a 3e-7 tail
    # Before the reference has ``learn`` rows, every row is a coin flip.
    tail_half = np.log(0.5 + TAIL_FLOOR) / np.log(TAIL_FLOOR)
    assert got[:50] == pytest.approx(np.full(50, tail_half))


def test_a_level_shift_is_an_anomaly_once_then_the_new_normal() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, 3000)
    x[1500:] += 8.0  # the level moves and stays
    det = create("likelihood", base="robust_zscore", long=300).fit(x[:500, None])
    s = det.score(x[:, None])
    assert s[1500:1505].max() > 0.5  # a tail below 1e-5 at the shift
    # The frozen z-score stays at ~8 for ever; the likelihood's reference moves.
    raw = create("robust_zscore").fit(x[:500, None]).score(x[:, None])
    assert np.median(raw[2500:]) > 6
    assert np.quantile(s[2000:], 0.99) < 0.2


def test_suppression_leaves_one_detection_per_event() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, 2000)
    x[1000:1040] += 10.0  # one 40-row event
    # Without the spatial rule: new records of the Gaussian noise would count too.
    common = {"base": "robust_zscore", "spatial_tolerance": None}
    with_rest = create("likelihood", rest=100, **common).fit(x[:500, None])
    without = create("likelihood", rest=0, **common).fit(x[:500, None])
    assert (without.score(x[:, None])[1000:1100] > 0.5).sum() > 5
    # Only rows beating every score of the previous 100 rows remain: the event's
    # onset (the short average still rising), nothing after it.
    flagged = np.flatnonzero(with_rest.score(x[:, None]) > 0.5)
    assert len(flagged) >= 1 and set(flagged) <= set(range(1000, 1005)), flagged


def test_likelihood_refuses_bad_params() -> None:
    with pytest.raises(ValueError, match="likelihood cannot wrap itself"):
        create("likelihood", base="likelihood")
    with pytest.raises(KeyError, match="unknown detector 'nope'"):
        create("likelihood", base="nope")
    with pytest.raises(ValueError, match="alpha"):
        create("likelihood", base="ewma", base_params={"alpha": 2.0})


def test_sliding_zscore_uses_the_previous_window_only() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(5.0, 2.0, 300)
    det = create("sliding_zscore", window=50).fit(x[:100, None])
    got = det.score(x[:, None])
    for i in (60, 150, 299):
        past = x[i - 50 : i]
        assert got[i] == pytest.approx(abs(x[i] - past.mean()) / past.std(ddof=1))


def test_a_value_beyond_every_earlier_value_scores_one() -> None:
    x = np.tile([0.0, 1.0, 2.0, 1.0], 200)  # range [0, 2]
    x = np.append(x, [2.05, 2.2, 1.0])  # within 5% of the range, beyond it, inside
    got = create("likelihood", base="robust_zscore", rest=0, learn=100).fit(x[:400, None])
    s = got.score(x[:, None])
    assert s[-2] == 1.0
    assert s[-3] < 1.0 and s[-1] < 1.0
    off = create("likelihood", base="robust_zscore", rest=0, learn=100, spatial_tolerance=None)
    assert off.fit(x[:400, None]).score(x[:, None])[-2] < 1.0
