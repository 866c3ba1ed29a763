"""NAB scoring rules on a hand-built series (values worked out by hand from NAB v1.1).

NAB's sweeper divides a true positive's sigmoid by its value at a window's first row,
so the earliest possible detection earns exactly ``tp``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lakehound.quality.nab import (
    PROFILES,
    LabelledSeries,
    normalised,
    optimise,
    score_series,
    sweep,
)


def _series() -> LabelledSeries:
    # 20 rows, one window on rows 10..13 (width 4); probation = floor(0.15 * 20) = 3 rows.
    window = np.full(20, -1)
    window[10:14] = 0
    return LabelledSeries("toy", np.arange(20), np.zeros(20), window, 1)


SIG_START = 2 / (1 + math.exp(-5)) - 1  # detection on the window's first row: x = -1
SIG_PAST_1 = 2 / (1 + math.exp(5)) - 1  # one window width (minus one row) past the window


def _det(*rows: int) -> np.ndarray:
    d = np.zeros(20, bool)
    d[list(rows)] = True
    return d


def test_probation_window_and_false_positives_standard() -> None:
    s = _series()
    # Row 2 is in probation (ignored), row 5 is an FP before any window (-1 x 0.11),
    # rows 10 and 12 are in the window (only the earliest counts), row 16 is an FP
    # |13 - 16| / (4 - 1) = 1 window past it.
    got = score_series(s, _det(2, 5, 10, 12, 16), PROFILES["standard"])
    assert got == pytest.approx(1.0 - 0.11 + 0.11 * SIG_PAST_1)
    assert s.probation == 3


def test_missed_window_costs_fn_weight_per_profile() -> None:
    s = _series()
    assert score_series(s, _det(), PROFILES["standard"]) == -1.0
    assert score_series(s, _det(), PROFILES["low_fn"]) == -2.0
    assert score_series(s, _det(5), PROFILES["low_fp"]) == pytest.approx(-1.0 - 0.22)


def test_later_detection_in_window_earns_less() -> None:
    s = _series()
    # Row 13 is the window's last row: x = -(13 - 13 + 1) / 4 = -0.25.
    assert score_series(s, _det(13), PROFILES["standard"]) == pytest.approx(
        (2 / (1 + math.exp(-1.25)) - 1) / SIG_START
    )


def test_window_inside_probation_is_not_counted() -> None:
    # A window on rows 0..2 lies inside the probation (3 rows): neither TP nor FN.
    window = np.full(20, -1)
    window[0:3] = 0
    s = LabelledSeries("toy", np.arange(20), np.zeros(20), window, 1)
    assert score_series(s, _det(), PROFILES["standard"]) == 0.0


def test_normalisation_null_zero_perfect_hundred() -> None:
    # 100 rows (probation 15), one window on rows 50..53: flagging every row costs
    # 35 x 0.11 before the window alone, so the null detector's best is to flag nothing.
    window = np.full(100, -1)
    window[50:54] = 0
    s = LabelledSeries("toy", np.arange(100), np.zeros(100), window, 1)
    prof = PROFILES["standard"]
    det = np.zeros(100, bool)
    assert normalised([s], [det], prof) == pytest.approx(0.0)
    det[50] = True
    assert normalised([s], [det], prof) == pytest.approx(100.0)
    det[[20, 56]] = True  # one FP before any window, one a window width past it
    # perfect = tp x windows = 1, null = -fn x windows = -1
    expected = 100 * (1.0 - 0.11 + 0.11 * SIG_PAST_1 + 1) / 2
    assert normalised([s], [det], prof) == pytest.approx(expected)


def test_null_baseline_is_the_better_of_nothing_and_everything() -> None:
    # On the 20-row toy flagging every row beats flagging none (NAB's null detector
    # scores 0.5 everywhere and takes its best threshold), so "nothing" is below 0.
    s = _series()
    assert normalised([s], [_det()], PROFILES["standard"]) < 0.0
    assert normalised([s], [np.ones(20, bool)], PROFILES["standard"]) == pytest.approx(0.0)


def test_sweep_equals_scoring_each_threshold() -> None:
    # The vectorised sweep against score_series at every threshold, by brute force.
    rng = np.random.default_rng(3)
    window = np.full(60, -1)
    window[20:26] = 0
    window[40:44] = 1
    s = LabelledSeries("toy", np.arange(60), np.zeros(60), window, 2)
    scores = np.round(rng.random(60), 1)  # ties on purpose
    for name, prof in PROFILES.items():
        thresholds, raw = sweep([s], [scores], prof)
        for thr, got in zip(thresholds, raw, strict=True):
            assert got == pytest.approx(score_series(s, scores >= thr, prof)), (name, thr)
        _, best = optimise([s], [scores], prof)
        assert best == pytest.approx(max(normalised([s], [scores >= t], prof) for t in thresholds))
