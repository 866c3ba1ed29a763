"""Log-session detectors: PCA residual (SPE), Invariants Mining and DeepLog.

Two input kinds, both plain 2-D numpy arrays so the usual contract
(``fit(X) -> self``, ``score(X)`` higher = more anomalous) holds:

* ``input_kind = "counts"`` (``pca_spe``, ``invariants_mining``): one row per
  session, one column per log key, the number of lines of that key in the session
  (a *count matrix*, as loglizer's ``FeatureExtractor`` builds it). Build it with
  :func:`count_matrix` from coded sessions.
* ``input_kind = "sequences"`` (``deeplog``): one row per session, the session's
  keys in time order coded ``1..V`` by a :class:`KeyVocabulary`, right-padded with
  0. Rows of the scored array may be longer than the training ones (a session's
  length is data, not a feature count).

Every detector here sets ``threshold_`` after ``fit`` from the training data alone
(Q-statistic, "any invariant broken", DeepLog's top-g): a session is anomalous when
``score > threshold_``. Train on normal sessions only.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from udfs.detectors.base import BaseDetector, NotFittedError, check_fraction, check_positive
from udfs.detectors.deep import TorchWeights, _has_torch, _single_thread
from udfs.detectors.registry import register
from udfs.detectors.series import _check_int

PAD = 0

# ---------------------------------------------------------------------------
# Session coding
# ---------------------------------------------------------------------------


class KeyVocabulary:
    """Log keys (template ids of any hashable type) <-> codes ``1..V``.

    Codes follow the keys' sorted order, so the same training keys give the same
    codes in every run; a key not seen in training codes as ``V + 1`` ("unseen").
    """

    def __init__(self, keys: Iterable[Hashable]) -> None:
        uniq = sorted(set(keys), key=lambda k: (str(type(k)), k))
        if not uniq:
            raise ValueError("KeyVocabulary: no keys to learn from")
        self.keys_ = uniq
        self.index_ = {k: i + 1 for i, k in enumerate(uniq)}

    @property
    def size(self) -> int:
        """V, the number of known keys (codes 1..V; V + 1 is "unseen")."""
        return len(self.keys_)

    def encode(
        self, sessions: Sequence[Sequence[Hashable]], width: int | None = None
    ) -> np.ndarray:
        """Sessions -> int64 array (n, width), right-padded with :data:`PAD`.

        ``width`` defaults to the longest session; a longer session is an error
        (never silently cut: its tail may be the anomaly).
        """
        longest = max((len(s) for s in sessions), default=0)
        width = longest if width is None else width
        if longest > width:
            raise ValueError(f"KeyVocabulary.encode: a session has {longest} keys > width {width}")
        unseen = self.size + 1
        out = np.full((len(sessions), max(width, 1)), PAD, dtype=np.int64)
        for i, s in enumerate(sessions):
            out[i, : len(s)] = [self.index_.get(k, unseen) for k in s]
        return out


def count_matrix(codes: np.ndarray, n_keys: int) -> np.ndarray:
    """Coded sessions (see :meth:`KeyVocabulary.encode`) -> counts, shape (n, n_keys + 1).

    Column ``j`` counts key code ``j + 1``; the last column counts unseen keys.
    """
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError(f"count_matrix expects a 2-D array of codes, got {codes.ndim}-D")
    if codes.size and (codes.min() < 0 or codes.max() > n_keys + 1):
        raise ValueError(f"count_matrix: codes must be in [0, {n_keys + 1}]")
    rows = np.repeat(np.arange(codes.shape[0]), codes.shape[1])
    flat = codes.reshape(-1)
    keep = flat != PAD
    out = np.zeros((codes.shape[0], n_keys + 2), dtype=np.float64)
    np.add.at(out, (rows[keep], flat[keep]), 1.0)
    return out[:, 1:]


# ---------------------------------------------------------------------------
# Count-matrix detectors
# ---------------------------------------------------------------------------


class _CountDetector(BaseDetector):
    input_kind = "counts"

    def _check(self, X: np.ndarray, fitting: bool = True) -> np.ndarray:
        X = super()._check(X, fitting)
        if (X < 0).any():
            raise ValueError(f"{type(self).__name__} expects non-negative counts")
        return X


@register("pca_spe")
class PCAResidual(_CountDetector):
    """PCA anomaly detection on log counts (Xu et al. SOSP 2009, as loglizer does it).

    The count matrix is TF-IDF weighted (``idf = log(n / df)``, df = sessions with
    the key) and centred with the training means (``term_weighting="none"`` /
    ``zero_mean=False`` switch that off). The principal components explaining
    ``n_components`` of the variance (a fraction) or that many components (an int)
    span the normal space; the score is the squared prediction error (SPE), the
    squared norm of the residual outside that space. ``threshold_`` is the
    Jackson-Mudholkar Q-statistic at ``c_alpha`` (3.2905: 99.95 % one-sided).
    """

    def __init__(
        self,
        n_components: float = 0.95,
        term_weighting: str = "tfidf",
        zero_mean: bool = True,
        c_alpha: float = 3.2905,
    ) -> None:
        n = float(n_components)
        if not (0 < n < 1 or (n >= 1 and n == int(n))):
            raise ValueError(
                f"n_components must be a fraction in (0, 1) or an int >= 1, got {n_components!r}"
            )
        if term_weighting not in ("tfidf", "none"):
            raise ValueError(f"term_weighting must be 'tfidf' or 'none', got {term_weighting!r}")
        self.n_components = n_components
        self.term_weighting = term_weighting
        self.zero_mean = bool(zero_mean)
        self.c_alpha = check_positive("c_alpha", c_alpha)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return (X * self.idf_) - self.mean_

    def _fit(self, X: np.ndarray) -> None:
        n, d = X.shape
        if self.term_weighting == "tfidf":
            df = (X > 0).sum(axis=0)
            # loglizer's 1e-8: a key absent from training gets a huge weight, so a
            # session holding it lands far outside the normal space.
            self.idf_ = np.log(n / (df + 1e-8))
        else:
            self.idf_ = np.ones(d)
        W = X * self.idf_
        self.mean_ = W.mean(axis=0) if self.zero_mean else np.zeros(d)
        W = W - self.mean_
        U, sigma, _ = np.linalg.svd(W.T @ W / n)
        if float(self.n_components) < 1:
            total = sigma.sum()
            share = np.cumsum(sigma) / total if total > 0 else np.ones(d)
            k = int(np.searchsorted(share, float(self.n_components) - 1e-12) + 1)
        else:
            k = int(self.n_components)
        k = min(k, d)
        P = U[:, :k]
        self.n_components_ = k
        self.projection_ = np.eye(d) - P @ P.T
        rest = sigma[k:]
        phi = np.array([np.sum(rest ** (i + 1)) for i in range(3)])
        if phi[0] <= 1e-12 or phi[1] <= 1e-24:
            # Nothing left outside the components: any residual at all is abnormal.
            self.threshold_ = float(np.max(self._spe(W), initial=0.0)) + 1e-9
            return
        h0 = 1.0 - 2.0 * phi[0] * phi[2] / (3.0 * phi[1] ** 2)
        self.threshold_ = float(
            phi[0]
            * (
                self.c_alpha * np.sqrt(2.0 * phi[1] * h0**2) / phi[0]
                + 1.0
                + phi[1] * h0 * (h0 - 1.0) / phi[0] ** 2
            )
            ** (1.0 / h0)
        )

    def _spe(self, W: np.ndarray) -> np.ndarray:
        R = W @ self.projection_
        return np.einsum("ij,ij->i", R, R)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self._spe(self._transform(X))


@register("invariants_mining")
class InvariantsMining(_CountDetector):
    """Invariants Mining (Lou et al., USENIX ATC 2010), as loglizer implements it.

    Searches small groups of keys (1 to ``max_keys`` columns, smallest first, a group
    skipped when a subset already has an invariant) for an integer linear relation
    ``theta . counts = 0`` (``|.| < epsilon``) that holds in at least ``percentage``
    of the training sessions: e.g. every "open" line is matched by a "close". theta
    is the right singular vector of the group's least singular value, scaled so its
    smallest |entry| is 1, 2 or 3 and rounded to integers. The search stops after
    as many invariants as the count matrix's estimated null-space dimension (a
    group whose keys are all zero in training is the invariant "this key never
    appears"). Score: the number of invariants a session breaks; ``threshold_`` 0.5,
    i.e. a session breaking any invariant is anomalous.
    """

    def __init__(
        self,
        percentage: float = 0.98,
        epsilon: float = 0.5,
        max_keys: int = 3,
        scales: Sequence[int] = (1, 2, 3),
    ) -> None:
        self.percentage = check_fraction("percentage", percentage)
        self.epsilon = check_positive("epsilon", epsilon)
        self.max_keys = _check_int("max_keys", max_keys, 1)
        scales = tuple(int(s) for s in scales)
        if not scales or min(scales) < 1:
            raise ValueError(f"scales must be positive integers, got {scales!r}")
        self.scales = scales

    def _holds(self, X: np.ndarray, cols: tuple[int, ...], theta: np.ndarray) -> float:
        return float(np.mean(np.abs(X[:, cols] @ theta) < self.epsilon))

    def _candidate(self, X: np.ndarray, cols: tuple[int, ...]) -> np.ndarray | None:
        sub = X[:, cols]
        _, _, vt = np.linalg.svd(sub, full_matrices=False)
        theta = vt[-1]
        small = np.abs(theta)
        if small.min() < 1e-6:
            # A zero weight means a smaller group carries the relation: not minimal.
            return None
        for scale in self.scales:
            scaled = np.round(theta / small.min() * scale)
            if self._holds(X, cols, scaled) >= self.percentage:
                return scaled
        return None

    def _null_dim(self, X: np.ndarray) -> int:
        # Keys that always move together leave singular values near 0: the number
        # of such directions bounds how many independent invariants exist.
        s = np.linalg.svd(X, compute_uv=False)
        tol = max(X.shape) * np.finfo(np.float64).eps * (s[0] if s.size else 0.0)
        small = int(np.sum(s <= max(tol, 1e-8 * (s[0] if s.size else 0.0))))
        return X.shape[1] - (s.size - small)

    def _fit(self, X: np.ndarray) -> None:
        d = X.shape[1]
        found: list[tuple[tuple[int, ...], np.ndarray]] = []
        budget = max(self._null_dim(X), 1)
        for size in range(1, self.max_keys + 1):
            for cols in combinations(range(d), size):
                if len(found) >= budget and size > 1:
                    break
                if any(set(c) <= set(cols) for c, _ in found):
                    continue
                if size == 1:
                    if not X[:, cols[0]].any():
                        found.append((cols, np.ones(1)))
                    continue
                theta = self._candidate(X, cols)
                if theta is not None:
                    found.append((cols, theta))
        self.invariants_ = found
        self.threshold_ = 0.5

    def _score(self, X: np.ndarray) -> np.ndarray:
        broken = np.zeros(X.shape[0])
        for cols, theta in self.invariants_:
            broken += np.abs(X[:, cols] @ theta) >= self.epsilon
        return broken


# ---------------------------------------------------------------------------
# DeepLog
# ---------------------------------------------------------------------------

_INSTALL_HINT = 'deeplog needs torch: pip install -e ".[deep]"'


def _build_deeplog(torch: Any, n_codes: int, embed: int, hidden: int, layers: int) -> Any:
    nn = torch.nn

    class _DeepLogNet(nn.Module):  # type: ignore[name-defined]
        """Embedding -> LSTM over the last ``window`` keys -> logits of the next key."""

        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(n_codes, embed)
            self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
            self.head = nn.Linear(hidden, n_codes)

        def forward(self, x: Any) -> Any:
            h, _ = self.lstm(self.embed(x))
            return self.head(h[:, -1, :])

    return _DeepLogNet()


@register("deeplog")
class DeepLog(TorchWeights, BaseDetector):
    """DeepLog's key model (Du et al., CCS 2017): an LSTM predicts the next log key.

    Input: coded sessions (``input_kind = "sequences"``, see the module doc). Every
    key of a session is predicted from the ``window`` keys before it (padding before
    the session's start, so the first keys are checked too) and, with ``end_token``,
    so is the end of the session: a session cut short or running on is a deviation
    as well. A session's score is the worst rank of an observed key among the
    model's predictions (1 = the most likely key; an unseen key ranks last), so
    ``score > g`` is DeepLog's rule "an observed key is not among the top-g
    predictions" and ``threshold_ = g``. ``top_g=None`` (default) takes g from the
    training sessions: the smallest g that passes ``train_quantile`` of them. The
    paper's fixed g = 9 was set for about 30 keys; with HDFS's 14 training keys
    (+ end) a top-9 list holds most of the vocabulary and lets anomalies through
    (measured in the README).

    Defaults (one LSTM layer of 32 units, 20 epochs) are smaller than the paper's
    2 x 64: on HDFS they score as well and fit in seconds on one CPU thread.

    Training uses each distinct (context, next key) pair once, weighted by how often
    it occurs: the same loss as over every position, at a fraction of the cost
    (normal sessions repeat). Adam, ``epochs`` passes of shuffled mini-batches,
    seeded by ``random_state``; one CPU thread (see ``udfs.detectors.deep``).
    """

    input_kind = "sequences"

    def __init__(
        self,
        window: int = 10,
        top_g: int | None = None,
        train_quantile: float = 0.99,
        embed: int = 16,
        hidden: int = 32,
        layers: int = 1,
        epochs: int = 20,
        batch_size: int = 256,
        lr: float = 0.005,
        end_token: bool = True,
        random_state: int = 0,
    ) -> None:
        self.window = _check_int("window", window, 1)
        self.top_g = None if top_g is None else _check_int("top_g", top_g, 1)
        self.train_quantile = check_fraction("train_quantile", train_quantile)
        self.embed = _check_int("embed", embed, 1)
        self.hidden = _check_int("hidden", hidden, 1)
        self.layers = _check_int("layers", layers, 1)
        self.epochs = _check_int("epochs", epochs, 1)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.lr = check_positive("lr", lr)
        self.end_token = bool(end_token)
        self.random_state = _check_int("random_state", random_state, 0)
        if not _has_torch():
            raise ImportError(_INSTALL_HINT)

    def _check(self, X: np.ndarray, fitting: bool = True) -> np.ndarray:
        X = super()._check(X, fitting)
        if (np.round(X) != X).any() or (X < 0).any():
            raise ValueError("DeepLog expects non-negative integer key codes (0 = padding)")
        return X.astype(np.int64)

    def score(self, X: np.ndarray) -> np.ndarray:
        # Sessions are as long as they are: the width of X is not a feature count.
        if not hasattr(self, "weights_"):
            raise NotFittedError("DeepLog.score() called before fit()")
        X = self._check(X, fitting=False)
        if X.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        return self._score(X)

    def _pairs(self, X: np.ndarray) -> tuple[list[tuple[int, ...]], list[int], list[int]]:
        """Per position of every session: (context, target, session index)."""
        end = self.n_codes_ - 1
        ctx: list[tuple[int, ...]] = []
        tgt: list[int] = []
        row: list[int] = []
        for i, r in enumerate(X):
            keys = [int(k) for k in r if k != PAD]
            # Codes above the training vocabulary are "unseen": one code for all.
            keys = [min(k, self.unseen_) for k in keys]
            targets = [*keys, end] if self.end_token else keys
            padded = [PAD] * self.window + keys
            for t, k in enumerate(targets):
                ctx.append(tuple(padded[t : t + self.window]))
                tgt.append(k)
                row.append(i)
        return ctx, tgt, row

    def _fit(self, X: np.ndarray) -> None:
        # Codes: 0 pad, 1..V keys, V + 1 unseen (never a training target), V + 2 end.
        self.unseen_ = int(X.max()) + 1
        self.n_codes_ = self.unseen_ + 2
        ctx, tgt, _ = self._pairs(X)
        uniq: dict[tuple[tuple[int, ...], int], int] = {}
        for c, t in zip(ctx, tgt, strict=True):
            uniq[(c, t)] = uniq.get((c, t), 0) + 1
        xs = np.array([c for c, _ in uniq], dtype=np.int64)
        ys = np.array([t for _, t in uniq], dtype=np.int64)
        ws = np.array(list(uniq.values()), dtype=np.float32)
        with _single_thread() as torch, torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            gen = torch.Generator().manual_seed(self.random_state)
            net = _build_deeplog(torch, self.n_codes_, self.embed, self.hidden, self.layers)
            opt = torch.optim.Adam(net.parameters(), lr=self.lr)
            tx, ty, tw = torch.from_numpy(xs), torch.from_numpy(ys), torch.from_numpy(ws)
            loss_fn = torch.nn.CrossEntropyLoss(reduction="none")
            for _ in range(self.epochs):
                perm = torch.randperm(len(tx), generator=gen)
                for start in range(0, len(tx), self.batch_size):
                    idx = perm[start : start + self.batch_size]
                    w = tw[idx]
                    loss = (loss_fn(net(tx[idx]), ty[idx]) * w).sum() / w.sum()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            self._keep(net)
        if self.top_g is None:
            # The rank that all but (1 - train_quantile) of the normal sessions stay within.
            train = self._score(X)
            self.threshold_ = float(np.quantile(train, self.train_quantile, method="higher"))
        else:
            self.threshold_ = float(self.top_g)

    def _build_net(self, torch: Any) -> Any:
        return _build_deeplog(torch, self.n_codes_, self.embed, self.hidden, self.layers)

    def ranks(self, X: np.ndarray) -> list[np.ndarray]:
        """Per session, the rank (1 = most likely) of each observed key (and the end)."""
        X = self._check(X, fitting=False)
        ctx, tgt, row = self._pairs(X)
        uniq = {p: i for i, p in enumerate(dict.fromkeys(zip(ctx, tgt, strict=True)))}
        pairs = list(uniq)
        rank = np.empty(len(pairs), dtype=np.float64)
        with _single_thread() as torch, torch.no_grad():
            net = self._net(torch)
            for start in range(0, len(pairs), 4096):
                chunk = pairs[start : start + 4096]
                logits = net(torch.from_numpy(np.array([c for c, _ in chunk], dtype=np.int64)))
                # Padding and "unseen" are never predicted: an unseen key ranks last.
                logits[:, PAD] = -np.inf
                logits[:, self.unseen_] = -np.inf
                t = torch.from_numpy(np.array([k for _, k in chunk], dtype=np.int64))
                own = logits.gather(1, t[:, None])
                r = (logits > own).sum(dim=1).numpy() + 1.0
                r[t.numpy() == self.unseen_] = self.n_codes_
                rank[start : start + len(chunk)] = r
        per_pos = rank[[uniq[p] for p in zip(ctx, tgt, strict=True)]]
        out: list[list[float]] = [[] for _ in range(X.shape[0])]
        for i, r in zip(row, per_pos, strict=True):
            out[i].append(float(r))
        return [np.asarray(o) for o in out]

    def _score(self, X: np.ndarray) -> np.ndarray:
        return np.array([r.max(initial=0.0) for r in self.ranks(X)], dtype=np.float64)
