"""The Isolation Forest's scores and leaves are scikit-learn's bit for bit, whether
its trees are walked all at once (small batches: the endpoint's single events) or
one ``Tree.apply`` per tree (large batches)."""

from __future__ import annotations

import numpy as np
import pytest

from udfs.detectors import tabular
from udfs.detectors.tabular import IsolationForest


@pytest.mark.parametrize("max_features", [1.0, 0.6])
def test_walk_equals_tree_apply_and_score_samples(max_features: float) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 7)) * [1, 10, 0.1, 1, 5, 1, 2]
    X[:, 3] = np.round(X[:, 3])  # ties on thresholds
    det = IsolationForest(n_estimators=40, max_samples=128, max_features=max_features).fit(X)
    test = np.vstack([X[:50], rng.normal(size=(30, 7)) * 4])
    ref = -det.model_.score_samples(test)
    tables = det._tables()
    for n in (1, 2, tabular.WALK_ROWS, tabular.WALK_ROWS + 1, len(test)):
        for lo in (0, 17):
            rows = test[lo : lo + n]
            assert np.array_equal(det.score(rows), ref[lo : lo + n])
            walked = tables.walk(rows.astype(np.float32)) - tables.offset
            applied = np.stack(
                [
                    tree.apply(
                        rows.astype(np.float32)[:, f]
                        if tables.subsample
                        else rows.astype(np.float32)
                    )
                    for tree, f in zip(tables.trees, tables.features, strict=True)
                ]
            )
            assert np.array_equal(walked, applied)
            assert np.array_equal(tables.leaves(rows), applied)
