"""NAB scoring rules on a hand-built series (values worked out by hand from NAB v1.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lakehound.quality.nab import PROFILES, LabelledSeries, normalised, score_series


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
    assert got == pytest.approx(SIG_START - 0.11 + 0.11 * SIG_PAST_1)
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
        2 / (1 + math.exp(-1.25)) - 1
    )


def test_normalisation_null_zero_perfect_hundred() -> None:
    s = _series()
    prof = PROFILES["standard"]
    assert normalised([s], [_det()], prof) == pytest.approx(0.0)
    assert normalised([s], [_det(10)], prof) == pytest.approx(100.0)
    expected = 100 * (SIG_START - 0.11 + 0.11 * SIG_PAST_1 + 1) / (SIG_START + 1)
    assert normalised([s], [_det(5, 10, 16)], prof) == pytest.approx(expected)
