"""Sequence-model detectors in torch (CPU): a small DeepAR / LSTM-family forecaster.

Same conventions as ``udfs.detectors.series`` (``sequential = True``): ``fit(X)``
learns from a training stretch of the series, ``score(X)`` forecasts every row of
``X`` from the rows before it (the first rows are padded with the training mean),
and a row's score is its largest |z| over the columns.

torch is an optional dependency (``pip install -e ".[deep]"``): it is imported
inside the methods, so ``import udfs.detectors`` works without it. The trained
weights are kept as numpy arrays; the torch module is rebuilt lazily when scoring
and never pickled, so a fitted detector ships to Spark workers like any other.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from udfs.detectors.base import check_fraction, check_positive
from udfs.detectors.registry import register
from udfs.detectors.series import QuantileIntervalDetector, _check_int

_INSTALL_HINT = 'lstm_quantile needs torch: pip install -e ".[deep]"'


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return torch


def _has_torch() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # an import hook or sys.modules blocks torch
        return False


@contextmanager
def _single_thread() -> Iterator[Any]:
    # Spark runs one Python worker per core: a detector that grabbed every core for
    # its BLAS threads would oversubscribe the executor. Restored on the way out.
    torch = _torch()
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield torch
    finally:
        torch.set_num_threads(prev)


def _build(torch: Any, d: int, hidden: int) -> Any:
    nn = torch.nn

    class _Net(nn.Module):  # type: ignore[name-defined]
        """LSTM over the context window -> (median step, lower width, upper width) per column."""

        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(d, hidden, num_layers=1, batch_first=True)
            self.head = nn.Linear(hidden, 3 * d)

        def forward(self, x: Any) -> Any:  # x: (batch, context, d) -> (batch, d, 3)
            h, _ = self.lstm(x)
            out = self.head(h[:, -1, :]).reshape(x.shape[0], d, 3)
            # The median is an anchor plus a learned step: the network only models the
            # change, so after a level shift beyond the training range (where the
            # saturating LSTM could not follow) the forecast still tracks the series
            # instead of flagging every row after the shift. The anchor is the median of
            # the last three rows, not the last one, so a single spike does not echo as a
            # second alert on the row after it (NAB standard score 37.6 vs 37.7 with the
            # last row, measured).
            anchor = x[:, -3:, :].median(dim=1).values
            med = anchor + out[..., 0]
            # Softplus widths keep lo <= med <= hi without sorting (no quantile crossing).
            lo = med - nn.functional.softplus(out[..., 1])
            hi = med + nn.functional.softplus(out[..., 2])
            return torch.stack([lo, med, hi], dim=-1)

    return _Net()


class TorchWeights:
    """The fitted torch module of a detector, kept as numpy ``weights_`` for pickling.

    The module itself (``net_``) is a cache: dropped when pickled, rebuilt from the
    weights by :meth:`_build_net` on first use on the other side (a Spark executor,
    the endpoint), so a bundle does not depend on torch's pickle format.
    """

    weights_: dict[str, np.ndarray]

    def _build_net(self, torch: Any) -> Any:
        raise NotImplementedError

    def _keep(self, net: Any) -> None:
        self.weights_ = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
        self.net_ = net.eval()

    def _net(self, torch: Any) -> Any:
        net = getattr(self, "net_", None)
        if net is None:
            net = self._build_net(torch)
            net.load_state_dict({k: torch.from_numpy(v) for k, v in self.weights_.items()})
            self.net_ = net.eval()
        return net

    def __getstate__(self) -> dict[str, Any]:
        state = dict(vars(self))
        state.pop("net_", None)
        return state


@register("lstm_quantile")
class LSTMQuantileForecaster(TorchWeights, QuantileIntervalDetector):
    """A small probabilistic forecaster in the DeepAR / LSTM family, trained on quantiles.

    An LSTM (``hidden`` units, one layer) reads the previous ``context`` rows and
    predicts the lower, median and upper quantile of the next row, the outer ones
    at ``(1 - coverage) / 2`` and ``(1 + coverage) / 2``; it is trained with the
    pinball (quantile) loss on the training stretch standardised by its mean / std
    (Adam, ``epochs`` passes in shuffled mini-batches of ``batch_size``, seeded by
    ``random_state``). Score semantics are those of ``forecast_quantile``: distance
    beyond the median in units of the half-interval on that side, so > 1 means the
    observation fell outside the predicted interval.

    One network sees all ``d`` columns and predicts three quantiles for each (rather
    than one network per column): a single training run whatever ``d`` (the
    per-series Spark path fits one model per group, so fit time is the cost that
    matters), and the columns of one entity's series usually move together, which
    the shared state can use, as DeepAR uses its covariates. With one column, as in
    NAB, the two designs coincide.
    """

    min_std: float = 1e-9

    def __init__(
        self,
        context: int = 32,
        hidden: int = 16,
        coverage: float = 0.98,
        epochs: int = 40,
        batch_size: int = 64,
        lr: float = 0.01,
        random_state: int = 0,
    ) -> None:
        self.context = _check_int("context", context, 1)
        self.hidden = _check_int("hidden", hidden, 1)
        self.coverage = check_fraction("coverage", coverage)
        self.epochs = _check_int("epochs", epochs, 1)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.lr = check_positive("lr", lr)
        self.random_state = _check_int("random_state", random_state, 0)
        # Fail at config time, not inside a Spark task, when the extra is missing.
        if not _has_torch():
            raise ImportError(_INSTALL_HINT)

    def min_rows(self) -> int:
        return 2 * self.context + 2

    def _windows(self, Z: np.ndarray) -> np.ndarray:
        """Per row t, the ``context`` standardised rows before it: shape (n, context, d).

        Rows before the start are padded with the training mean (0 once standardised).
        """
        padded = np.vstack([np.zeros((self.context, Z.shape[1])), Z])
        win = np.lib.stride_tricks.sliding_window_view(padded, self.context, axis=0)
        return np.ascontiguousarray(win[: Z.shape[0]].transpose(0, 2, 1), dtype=np.float32)

    def _fit(self, X: np.ndarray) -> None:
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.std_ = np.where(std > self.min_std, std, 1.0)
        Z = (X - self.mean_) / self.std_
        d = X.shape[1]
        levels = np.array([(1 - self.coverage) / 2, 0.5, (1 + self.coverage) / 2])
        with _single_thread() as torch, torch.random.fork_rng(devices=[]):
            # fork_rng: seeding the initialisation must not reset the caller's global RNG.
            torch.manual_seed(self.random_state)
            gen = torch.Generator().manual_seed(self.random_state)
            net = _build(torch, d, self.hidden)
            # Every row is a training example, the first ones with the padded context
            # they will also have when the series is scored from its start.
            xs = torch.from_numpy(self._windows(Z))
            ys = torch.from_numpy(Z.astype(np.float32))[..., None]  # (n, d, 1)
            q = torch.from_numpy(levels.astype(np.float32))
            opt = torch.optim.Adam(net.parameters(), lr=self.lr)
            n = xs.shape[0]
            for _ in range(self.epochs):
                perm = torch.randperm(n, generator=gen)
                for start in range(0, n, self.batch_size):
                    idx = perm[start : start + self.batch_size]
                    err = ys[idx] - net(xs[idx])  # (b, d, 3)
                    loss = torch.maximum(q * err, (q - 1) * err).mean()  # pinball loss
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            self._keep(net)

    def _build_net(self, torch: Any) -> Any:
        return _build(torch, len(self.mean_), self.hidden)

    def forecast(self, X: np.ndarray) -> np.ndarray:
        """Per row and column: the (lower, median, upper) predicted quantiles, shape (n, d, 3)."""
        X = self._check(X, fitting=False)
        wins = self._windows((X - self.mean_) / self.std_)
        out = np.empty((*X.shape, 3), dtype=np.float64)
        with _single_thread() as torch, torch.no_grad():
            net = self._net(torch)
            for start in range(0, len(wins), 4096):
                chunk = torch.from_numpy(wins[start : start + 4096])
                out[start : start + 4096] = net(chunk).numpy()
        return self.mean_[None, :, None] + self.std_[None, :, None] * out
