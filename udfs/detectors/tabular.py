"""Multivariate detectors over tabular features, wrapping scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest as _SkIsolationForest
from sklearn.ensemble._iforest import _average_path_length

from udfs.detectors.base import BaseDetector, check_positive, top_k_by_abs
from udfs.detectors.registry import register


@register("isolation_forest")
class IsolationForest(BaseDetector):
    """scikit-learn's Isolation Forest; raw score = -score_samples (higher = more anomalous).

    ``explain`` is a tree-path attribution: walking each tree from the root to the
    row's leaf, every split credits its feature with ``1 / (depth + 1)``. A feature
    that isolates the row near the root, in many trees, is what made the path short.

    Scoring walks each tree once per row (``Tree.apply``) and adds the same per-leaf
    path lengths as scikit-learn's ``score_samples``, in the same order, so the scores
    are bit-for-bit scikit-learn's. Alerts are explained by TreeSHAP instead
    (:mod:`udfs.explain`); this path attribution is the detector-level heuristic.
    """

    def __init__(
        self,
        n_estimators: int = 100,
        max_samples: int | float | str = "auto",
        max_features: float = 1.0,
        random_state: int = 0,
        n_jobs: int | None = 1,
    ) -> None:
        if int(n_estimators) < 1:
            raise ValueError(f"n_estimators must be >= 1, got {n_estimators!r}")
        if isinstance(max_samples, str) and max_samples != "auto":
            raise ValueError(
                f"max_samples must be 'auto', an int or a fraction, got {max_samples!r}"
            )
        if not isinstance(max_samples, str):
            check_positive("max_samples", max_samples)
        if not 0 < float(max_features) <= 1:
            raise ValueError(f"max_features must be in (0, 1], got {max_features!r}")
        self.n_estimators = int(n_estimators)
        self.max_samples = max_samples
        self.max_features = float(max_features)
        self.random_state = int(random_state)
        # One job per Python worker: Spark already runs one worker per core.
        self.n_jobs = n_jobs

    def __getstate__(self) -> dict[str, Any]:
        # The lookup tables are derived from model_ and rebuilt on first use: they
        # never go into an artifact (its bytes and checksum stay those of the fit).
        state = dict(self.__dict__)
        state.pop("tables_", None)
        return state

    def _fit(self, X: np.ndarray) -> None:
        max_samples: Any = self.max_samples
        if isinstance(max_samples, (int, float)) and max_samples >= 1:
            max_samples = min(int(max_samples), X.shape[0])
        self.tables_: _ForestTables | None = None
        self.model_ = _SkIsolationForest(
            n_estimators=self.n_estimators,
            max_samples=max_samples,
            max_features=self.max_features,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        ).fit(X)

    def _tables(self) -> _ForestTables:
        tables = getattr(self, "tables_", None)
        if tables is None:
            tables = self.tables_ = _ForestTables.build(self.model_, self.n_features_in_)
        return tables

    def _score(self, X: np.ndarray) -> np.ndarray:
        tables = self._tables()
        if not tables.exact:
            return -self.model_.score_samples(X)
        return tables.scores(tables.depths(X, None))

    def explain(self, X: np.ndarray, top_k: int = 3) -> list[list[tuple[int, float]]]:
        X = self._check(X, fitting=False)
        tables = self._tables()
        if X.shape[0] == 0:
            return []
        return top_k_by_abs(tables.attribution(tables.leaves(X), X.shape[1]), top_k)


# Up to this many rows, all trees are walked at once (one numpy step per level);
# above, one Tree.apply per tree is cheaper.
WALK_ROWS = 16


class _ForestTables:
    """Per-tree lookup tables of a fitted scikit-learn forest, built once per process.

    * ``leaf_value[t][node]``: what scikit-learn adds to a row's depth when it ends
      in ``node`` of tree ``t`` (path length + average path length of the leaf - 1);
    * ``path_feature[t, node, d]``: the (global) feature split on at depth ``d`` on
      the way from the root to ``node``, -1 past the node or at the leaf itself.
    """

    def __init__(self, model: _SkIsolationForest, n_features: int) -> None:
        self.trees = [est.tree_ for est in model.estimators_]
        self.features = [np.asarray(f, dtype=np.intp) for f in model.estimators_features_]
        self.subsample = int(model._max_features) != n_features
        # scikit-learn's private per-tree arrays: present in the pinned version; if a
        # future one drops them, scoring falls back to score_samples (same numbers).
        dpl = getattr(model, "_decision_path_lengths", None)
        apl = getattr(model, "_average_path_length_per_tree", None)
        self.exact = dpl is not None and apl is not None
        if self.exact:
            assert dpl is not None and apl is not None
            self.leaf_value = [d + a - 1.0 for d, a in zip(dpl, apl, strict=True)]
            self.denominator = len(model.estimators_) * _average_path_length([model._max_samples])
        paths = [_feature_paths(t, f) for t, f in zip(self.trees, self.features, strict=True)]
        n_nodes = max(p.shape[0] for p in paths)
        depth = max(p.shape[1] for p in paths)
        self.path_feature = np.full((len(paths), n_nodes, depth), -1, dtype=np.intp)
        for t, p in enumerate(paths):
            self.path_feature[t, : p.shape[0], : p.shape[1]] = p
        self.weight = 1.0 / (np.arange(depth, dtype=np.float64) + 1.0)
        # All trees as one padded node table (trees x nodes, flattened), for walking
        # every tree at once: a leaf points to itself, so extra steps stay put.
        self.n_trees, self.n_nodes = len(self.trees), n_nodes
        self.max_depth = max(int(t.max_depth) for t in self.trees)
        node_ids = np.arange(n_nodes, dtype=np.intp)
        self.left = np.tile(node_ids, (len(self.trees), 1))
        self.right = self.left.copy()
        self.split = np.zeros((len(self.trees), n_nodes), dtype=np.intp)
        self.cut = np.full((len(self.trees), n_nodes), np.inf)
        for t, (tree, feats) in enumerate(zip(self.trees, self.features, strict=True)):
            m = tree.node_count
            inner = tree.children_left >= 0
            self.left[t, :m] = np.where(inner, tree.children_left, node_ids[:m])
            self.right[t, :m] = np.where(inner, tree.children_right, node_ids[:m])
            self.split[t, :m] = np.where(inner, feats[np.maximum(tree.feature, 0)], 0)
            self.cut[t, :m] = np.where(inner, tree.threshold, np.inf)
        offset = (np.arange(len(self.trees), dtype=np.intp) * n_nodes)[:, None]
        self.left = (self.left + offset).ravel()
        self.right = (self.right + offset).ravel()
        self.split, self.cut = self.split.ravel(), self.cut.ravel()
        self.offset = offset
        if self.exact:
            self.leaf_flat = np.zeros(len(self.trees) * n_nodes)
            for t, lv in enumerate(self.leaf_value):
                self.leaf_flat[t * n_nodes : t * n_nodes + len(lv)] = lv

    @classmethod
    def build(cls, model: _SkIsolationForest, n_features: int) -> _ForestTables:
        return cls(model, n_features)

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        # score_samples validates to float32 before walking the trees: the same cut.
        return np.asarray(X, dtype=np.float32)

    def walk(self, X32: np.ndarray) -> np.ndarray:
        """Each row's leaf in each tree (trees x rows, as flat indices into the
        padded node table), all trees at once: the comparisons of ``Tree.apply``
        (float32 value <= float64 threshold), one numpy step per level instead of
        one call per tree."""
        n, d = X32.shape
        flat = X32.ravel()
        base = np.arange(n, dtype=np.intp) * d
        node = np.broadcast_to(self.offset, (self.n_trees, n)).copy()
        for _ in range(self.max_depth):
            go_left = flat[base + self.split[node]] <= self.cut[node]
            node = np.where(go_left, self.left[node], self.right[node])
        return node

    def depths(self, X: np.ndarray, leaves_out: np.ndarray | None) -> np.ndarray:
        """scikit-learn's summed depths (``_compute_score_samples``), optionally
        keeping each row's leaf per tree in ``leaves_out`` (trees x rows)."""
        X32 = self._inputs(X)
        if X32.shape[0] <= WALK_ROWS:
            flat = self.walk(X32)
            if leaves_out is not None:
                leaves_out[:] = flat - self.offset
            # Added tree by tree from 0, as scikit-learn's loop does (bit-identical).
            return np.cumsum(self.leaf_flat[flat], axis=0)[-1]
        depths = np.zeros(X32.shape[0], dtype=np.float64, order="F")
        for t, (tree, feats) in enumerate(zip(self.trees, self.features, strict=True)):
            leaves = tree.apply(X32[:, feats] if self.subsample else X32)
            depths += self.leaf_value[t][leaves]
            if leaves_out is not None:
                leaves_out[t] = leaves
        return depths

    def scores(self, depths: np.ndarray) -> np.ndarray:
        # -score_samples, written as scikit-learn computes it (so bit-identical).
        return np.asarray(
            2
            ** (
                -np.divide(
                    depths,
                    self.denominator,
                    out=np.ones_like(depths),
                    where=self.denominator != 0,
                )
            ),
            dtype=np.float64,
        )

    def leaves(self, X: np.ndarray) -> np.ndarray:
        X32 = self._inputs(X)
        if X32.shape[0] <= WALK_ROWS:
            return self.walk(X32) - self.offset
        return np.stack(
            [
                tree.apply(X32[:, feats] if self.subsample else X32)
                for tree, feats in zip(self.trees, self.features, strict=True)
            ]
        )

    def attribution(self, leaves: np.ndarray, n_features: int) -> np.ndarray:
        """Tree-path attribution (rows x features) of rows ending in ``leaves``
        (trees x rows), divided by the number of trees.

        ``np.add.at`` adds unbuffered in index order, which is tree by tree and root to
        leaf within a tree for each row: the same sums, in the same order, as walking
        every row's decision path one at a time.
        """
        n_trees, n_rows = leaves.shape
        contrib = np.zeros((n_rows, n_features))
        feats = self.path_feature[np.arange(n_trees)[:, None], leaves]  # trees x rows x depth
        rows = np.broadcast_to(np.arange(n_rows)[None, :, None], feats.shape)
        weight = np.broadcast_to(self.weight, feats.shape)
        split = feats >= 0
        np.add.at(contrib, (rows[split], feats[split]), weight[split])
        contrib /= n_trees
        return contrib


def _feature_paths(tree: Any, feats: np.ndarray) -> np.ndarray:
    """(nodes x depth): the global feature split on at each depth from the root to
    each node (-1 where there is none), level by level, without a Python loop per node."""
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    parent = np.full(tree.node_count, -1, dtype=np.intp)
    levels = [np.zeros(1, dtype=np.intp)]
    while True:
        nodes = levels[-1]
        inner = nodes[left[nodes] >= 0]
        if inner.size == 0:
            break
        kids = np.concatenate([left[inner], right[inner]])
        parent[kids] = np.concatenate([inner, inner])
        levels.append(kids)
    node_path = np.full((tree.node_count, len(levels)), -1, dtype=np.intp)
    for depth, nodes in enumerate(levels):
        if depth:
            node_path[nodes, :depth] = node_path[parent[nodes], :depth]
        node_path[nodes, depth] = nodes
    split_feature = np.where(node_path >= 0, feature[np.maximum(node_path, 0)], -1)
    return np.where(split_feature >= 0, feats[np.maximum(split_feature, 0)], -1)
