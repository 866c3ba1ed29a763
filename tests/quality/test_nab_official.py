"""The NAB runner's exact optimiser reproduces NAB's published scores.

The fixture (tests/quality/fixtures/nab_official, made by its extract.py from numenta/NAB,
MIT) holds the published per-row anomaly scores of two detectors on NAB's 58 series
and NAB's published final scores for them, computed by NAB's own ``sweeper.py``,
``optimizer.py`` and ``runner.normalize``. Those figures are the expected values: this
test does not compute them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lakehound.quality.nab import PROFILES, LabelledSeries, optimise

FIXTURE = Path(__file__).parent / "fixtures" / "nab_official" / "nab_official.npz"
NAB_PROFILE = {
    "standard": "standard",
    "low_fp": "reward_low_FP_rate",
    "low_fn": "reward_low_FN_rate",
}


def _corpus(det: str) -> tuple[list[LabelledSeries], list[np.ndarray]]:
    data = np.load(FIXTURE)
    corpus, scores = [], []
    for i, name in enumerate(data["names"]):
        sc = data[f"{i}/{det}"]
        window = np.full(len(sc), -1)
        for w, (a, b) in enumerate(data[f"{i}/windows"]):
            window[a : b + 1] = w
        n_windows = len(data[f"{i}/windows"])
        corpus.append(
            LabelledSeries(str(name), np.arange(len(sc)), np.zeros(len(sc)), window, n_windows)
        )
        scores.append(sc)
    return corpus, scores


@pytest.mark.parametrize("detector", ["windowedGaussian", "numenta"])
def test_exact_optimiser_matches_published_nab_scores(detector: str) -> None:
    published = json.loads(str(np.load(FIXTURE)["published"]))[detector]
    corpus, scores = _corpus(detector)
    assert len(corpus) == 58
    for ours, theirs in NAB_PROFILE.items():
        _, got = optimise(corpus, scores, PROFILES[ours])
        assert got == pytest.approx(published[theirs], abs=0.1), (detector, ours, got)
