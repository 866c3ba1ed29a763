"""The detector contract, after PyOD and river: small, explicit, testable.

- parameters are validated in ``__init__`` (a bad value fails at config time, not
  inside a Spark task an hour later);
- ``fit(X) -> self`` learns from a 2-D float array, ``score(X) -> ndarray`` returns
  one float per row where *higher means more anomalous*;
- seeded (``random_state``), picklable (plain attributes, no lambdas or open
  handles) and never mutating its input.

Detectors that can say *why* a row scored high implement ``explain(X, top_k)``,
returning per row the ``top_k`` (feature index, contribution) pairs, strongest
first; the bundle attaches feature names and values.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Detector(Protocol):
    def fit(self, X: np.ndarray) -> Detector: ...

    def score(self, X: np.ndarray) -> np.ndarray: ...


class NotFittedError(RuntimeError):
    """score() or explain() called before fit()."""


class BaseDetector:
    """Shared input checks; subclasses implement ``_fit`` and ``_score``."""

    name: str = ""
    #: Series detectors (moving average, EWMA, forecasters) score rows in time
    #: order and use the order itself; tabular detectors treat rows independently.
    sequential: bool = False

    def fit(self, X: np.ndarray) -> BaseDetector:
        X = self._check(X)
        self._fit(X)
        self.n_features_in_ = X.shape[1]
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"{type(self).__name__}.score() called before fit()")
        X = self._check(X, fitting=False)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{type(self).__name__} was fitted on {self.n_features_in_} features, "
                f"got {X.shape[1]}"
            )
        if X.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        out = np.asarray(self._score(X), dtype=np.float64).reshape(-1)
        if out.shape[0] != X.shape[0]:
            raise AssertionError(
                f"{type(self).__name__} scored {out.shape[0]} of {X.shape[0]} rows"
            )
        return out

    def _check(self, X: np.ndarray, fitting: bool = True) -> np.ndarray:
        # np.array (not asarray) copies, so nothing a subclass does can touch the caller's data.
        X = np.array(X, dtype=np.float64)
        if X.ndim == 1:
            X = X.reshape(-1, 1)
        if X.ndim != 2:
            raise ValueError(f"{type(self).__name__} expects a 2-D array, got {X.ndim}-D")
        if fitting and X.shape[0] < self.min_rows():
            raise ValueError(
                f"{type(self).__name__} needs at least {self.min_rows()} rows to fit, "
                f"got {X.shape[0]}"
            )
        if not np.isfinite(X).all():
            # The NaN policy belongs to the caller (the bundle imputes training
            # medians); a detector that silently propagated NaN would hide it.
            raise ValueError(f"{type(self).__name__} got NaN or infinite values")
        return X

    def min_rows(self) -> int:
        return 2

    def _fit(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _score(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


def check_fraction(name: str, value: float) -> float:
    value = float(value)
    if not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return value


def top_k_by_abs(contrib: np.ndarray, top_k: int) -> list[list[tuple[int, float]]]:
    """Per row, the ``top_k`` column indexes with the largest |contribution|."""
    k = min(top_k, contrib.shape[1])
    order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :k]
    return [[(int(j), float(contrib[i, j])) for j in row] for i, row in enumerate(order)]
