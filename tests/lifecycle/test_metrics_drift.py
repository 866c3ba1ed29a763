"""Lifecycle metrics and drift statistics against scikit-learn and scipy on the same data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from lakehound.lifecycle import drift, metrics, promotion


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(2000) < 0.05).astype(int)
    # Rounded scores create ties, which is where hand-written AUCs usually go wrong.
    s = np.round(rng.normal(size=2000) + 1.5 * y, 1)
    assert metrics.average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s))
    assert metrics.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s))
    flagged = s >= 1.0
    got = metrics.confusion(y, flagged)
    assert got["precision"] == pytest.approx(skm.precision_score(y, flagged))
    assert got["recall"] == pytest.approx(skm.recall_score(y, flagged))
    assert got["f1"] == pytest.approx(skm.f1_score(y, flagged))


def test_precision_at_k_and_best_cut_by_hand() -> None:
    y = np.array([1, 0, 1, 0, 0, 1])
    s = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.05])
    assert metrics.precision_at_k(y, s, 1) == 1.0
    assert metrics.precision_at_k(y, s, 2) == 0.5
    assert metrics.precision_at_k(y, s, 3) == pytest.approx(2 / 3)
    # Cuts: 0.9 -> F1 2*1/(1+3)=0.5; 0.7 -> 2*2/(3+3)=0.667; 0.05 -> 2*3/(6+3)=0.667.
    # The first (highest) cut reaching the maximum wins.
    cut, f1 = metrics.best_f1_cut(y, s)
    assert (cut, f1) == (0.7, pytest.approx(2 / 3))


def test_best_cut_keeps_unscored_rows_one_tie() -> None:
    # NaN scores rank lowest as one tied group. Cuts: 1.0 flags the negative only
    # (F1 0); below it every row is flagged: F1 = 2*1/(3+1) = 0.5. A cut inside the
    # NaN group (flagging 2 of 3 rows, F1 2/3) does not exist, whatever the row order.
    for y, s in (([0, 1, 0], [1.0, np.nan, np.nan]), ([0, 0, 1], [1.0, np.nan, np.nan])):
        cut, f1 = metrics.best_f1_cut(np.array(y), np.array(s))
        assert f1 == pytest.approx(0.5)
        assert cut == -np.inf


def test_ranking_metrics_by_hand() -> None:
    # Ranked 0.9 (+), 0.8 (-), 0.7 (+), 0.1 (-): AP = (1/1 + 2/3) / 2; ROC: 3 of the 4
    # (positive, negative) pairs are ordered right.
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.7, 0.1])
    assert metrics.average_precision(y, s) == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.roc_auc(y, s) == pytest.approx(3 / 4)
    # A tie is one threshold: at 0.5, P = 1/2 and R = 1; the tied pair counts half.
    y, s = np.array([1, 0, 0]), np.array([0.5, 0.5, 0.2])
    assert metrics.average_precision(y, s) == pytest.approx(0.5)
    assert metrics.roc_auc(y, s) == pytest.approx(0.75)


def test_nan_scores_are_one_lowest_tie_whatever_their_order() -> None:
    # 0.5 (+): P 1, R 1/2; then the three NaN scores as one threshold: P 2/4, R 1.
    y = np.array([1, 0, 1, 0])
    s = np.array([np.nan, np.nan, 0.5, np.nan])
    for order in ([0, 1, 2, 3], [1, 0, 2, 3], [3, 2, 1, 0]):
        assert metrics.average_precision(y[order], s[order]) == pytest.approx(0.75)
        # Pairs: 0.5 beats both negatives; the NaN positive ties both (half each).
        assert metrics.roc_auc(y[order], s[order]) == pytest.approx((2 + 1) / 4)


def test_nan_score_ranks_last_and_no_positive_is_nan() -> None:
    y = np.array([1, 0, 0])
    assert metrics.average_precision(y, np.array([np.nan, 0.1, 0.2])) == pytest.approx(1 / 3)
    assert math.isnan(metrics.average_precision(np.zeros(3), np.array([1.0, 2.0, 3.0])))
    assert math.isnan(metrics.roc_auc(np.zeros(3), np.array([1.0, 2.0, 3.0])))


def test_card_precision_at_k_by_hand() -> None:
    # Day 1: card a (fraud, max .9), card b (ok, .8), card c (fraud, .1) -> top2 = a, b -> 0.5
    # Day 2: card a (ok, .3), card d (fraud, .7) -> top2 = d, a -> 0.5 ; top1 = d -> 1.0
    days = np.array([1, 1, 1, 1, 2, 2])
    cards = np.array(["a", "a", "b", "c", "a", "d"])
    y = np.array([0, 1, 0, 1, 0, 1])
    s = np.array([0.9, 0.2, 0.8, 0.1, 0.3, 0.7])
    assert metrics.card_precision_at_k(days, cards, y, s, 2) == pytest.approx(0.5)
    assert metrics.card_precision_at_k(days, cards, y, s, 1) == pytest.approx((1.0 + 1.0) / 2)


def test_ks_by_hand() -> None:
    # F_a - F_b is 1/3 on [0, 1), [1, 2) and [2, 3); non-finite values are dropped.
    a, b = np.array([0.0, 1.0, 2.0, np.nan]), np.array([1.0, 2.0, 3.0, np.inf])
    assert drift.ks_statistic(a, b) == pytest.approx(1 / 3)
    assert math.isnan(drift.ks_statistic(np.array([np.nan]), b))


def test_ks_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=700), rng.normal(0.3, 1.2, size=500)
    assert drift.ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic)
    ints_a, ints_b = rng.integers(0, 5, 300), rng.integers(1, 6, 400)
    assert drift.ks_statistic(ints_a, ints_b) == pytest.approx(
        stats.ks_2samp(ints_a, ints_b).statistic
    )


def test_psi_by_hand_and_stability() -> None:
    # Reference 0..9 with bins=2: median edge at 4.5 -> halves [0.5, 0.5].
    ref = np.arange(10.0)
    cur = np.array([0.0, 1.0, 2.0, 3.0, 9.0])  # 4/5 below the edge, 1/5 above
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert drift.psi(ref, cur, bins=2) == pytest.approx(expected)
    rng = np.random.default_rng(0)
    same = drift.psi(rng.normal(size=20000), rng.normal(size=20000))
    shifted = drift.psi(rng.normal(size=20000), rng.normal(1.0, 1.0, size=20000))
    assert same < 0.01 and shifted > 0.25
    assert drift.level(same, 0.1, 0.25) == "stable"
    assert drift.level(0.15, 0.1, 0.25) == "moderate"
    assert drift.level(shifted, 0.1, 0.25) == "significant"


def test_promotion_rule() -> None:
    assert promotion.decide(0.50, 0.40, 0.0).promote
    assert not promotion.decide(0.40, 0.40, 0.0).promote
    assert not promotion.decide(0.41, 0.40, 0.02).promote
    assert promotion.decide(0.30, None, 0.0).promote
    assert not promotion.decide(float("nan"), 0.4, 0.0).promote


def test_handbook_split_drops_known_compromised_cards() -> None:
    import datetime as dt

    import pandas as pd

    from lakehound.lifecycle import handbook

    d = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(5)]
    # train d0, delay d1..d2, test d3..d4 (1/2/2 days).
    df = pd.DataFrame(
        {
            "day": [d[0], d[0], d[1], d[2], d[3], d[3], d[3], d[4], d[4]],
            "card": ["a", "b", "c", "d", "a", "c", "e", "d", "e"],
            "y": [1, 0, 1, 1, 0, 1, 0, 1, 0],
        }
    )
    train, test = handbook.split(df, d[0], train_days=1, delay_days=2, test_days=2)
    assert list(train["card"]) == ["a", "b"]
    # Test day d3: known = {a} + delay day d0 -> {a}; so c and e stay.
    # Test day d4: delay day d1 adds c -> d stays (its fraud on d2 is not known yet).
    assert list(zip(test["day"], test["card"], strict=True)) == [
        (d[3], "c"), (d[3], "e"), (d[4], "d"), (d[4], "e"),
    ]  # fmt: skip


def test_stored_metric_values_are_finite_or_null() -> None:
    # What the drift / evaluate / promote jobs hand to Delta: undefined metrics are null.
    assert metrics.stored(None) is None
    assert metrics.stored(float("nan")) is None
    assert metrics.stored(np.float64("nan")) is None
    assert metrics.stored(float("inf")) is None
    assert metrics.stored(-np.inf) is None
    got = metrics.stored(np.float64(0.25))
    assert got == 0.25 and type(got) is float
