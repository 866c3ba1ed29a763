"""Log-session detectors (udfs.detectors.logs) on small planted sessions.

The sessions follow a tiny "open, write*, close" grammar, like an HDFS block
(allocate, receive x3, terminate x3); the anomalies break it in ways whose
expected verdict is known by construction, not by running the detectors.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from udfs.detectors.logs import (
    DeepLog,
    InvariantsMining,
    KeyVocabulary,
    PCAResidual,
    count_matrix,
)
from udfs.detectors.registry import available, create, get


def _normal_sessions(n: int, seed: int) -> list[list[str]]:
    # "A" opens, k replicas each "B" (receive) then later "C" (terminate), "D" closes.
    # Invariants: #B == #C, #A == #D == 1.
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(1, 4))
        out.append(["A", *["B"] * k, *["C"] * k, "D"])
    return out


# Planted: a missing terminate (B != C), a doubled open, a never-seen key, a session cut
# after its writes (no C, no D).
ANOMALIES = [
    ["A", "B", "B", "C", "D"],
    ["A", "A", "B", "C", "D"],
    ["A", "B", "C", "X", "D"],
    ["A", "B", "B"],
]


@pytest.fixture(scope="module")
def data() -> tuple[KeyVocabulary, list[list[str]], list[list[str]], np.ndarray]:
    train = _normal_sessions(300, 0)
    test = _normal_sessions(60, 1) + ANOMALIES
    labels = np.array([0] * 60 + [1] * len(ANOMALIES))
    return KeyVocabulary(k for s in train for k in s), train, test, labels


def test_vocabulary_codes_and_count_matrix() -> None:
    vocab = KeyVocabulary(["b", "a", "c", "a"])
    codes = vocab.encode([["a", "c", "zz"], ["b"]])
    # Sorted keys a, b, c -> 1, 2, 3; unseen -> 4; padding 0.
    np.testing.assert_array_equal(codes, [[1, 3, 4], [2, 0, 0]])
    np.testing.assert_array_equal(count_matrix(codes, vocab.size), [[1, 0, 1, 1], [0, 1, 0, 0]])
    with pytest.raises(ValueError, match="width"):
        vocab.encode([["a", "b", "c"]], width=2)
    with pytest.raises(ValueError, match="codes"):
        count_matrix(np.array([[9]]), vocab.size)


def test_invariants_mining_finds_the_planted_invariants(data) -> None:  # type: ignore[no-untyped-def]
    vocab, train, test, labels = data
    c_train = count_matrix(vocab.encode(train), vocab.size)
    im = InvariantsMining().fit(c_train)
    # Columns: A, B, C, D, unseen. Expected relations (up to sign): the unseen column
    # stays 0, B == C, A == D; anything else is redundant given those.
    found = {(cols, tuple(np.sign(theta[0]) * theta)) for cols, theta in im.invariants_}
    assert ((4,), (1.0,)) in found
    assert ((1, 2), (1.0, -1.0)) in found
    assert ((0, 3), (1.0, -1.0)) in found
    s = im.score(count_matrix(vocab.encode(test), vocab.size))
    np.testing.assert_array_equal(s > im.threshold_, labels.astype(bool))


def test_pca_spe_flags_the_planted_sessions(data) -> None:  # type: ignore[no-untyped-def]
    vocab, train, test, labels = data
    c_train = count_matrix(vocab.encode(train), vocab.size)
    c_test = count_matrix(vocab.encode(test), vocab.size)
    det = PCAResidual(term_weighting="none").fit(c_train)
    s = det.score(c_test)
    # Every planted session above the Q-statistic threshold, every normal one below.
    np.testing.assert_array_equal(s > det.threshold_, labels.astype(bool))
    # loglizer's TF-IDF: A, B, C and D are in every training session, so their idf is
    # log(n / n) = 0 and only the session with the never-seen key X can stand out.
    tfidf = PCAResidual().fit(c_train)
    flagged = tfidf.score(c_test) > tfidf.threshold_
    np.testing.assert_array_equal(np.flatnonzero(flagged), [60 + 2])


@pytest.mark.slow
def test_deeplog_flags_out_of_grammar_sessions(data) -> None:  # type: ignore[no-untyped-def]
    vocab, train, test, labels = data
    # Few distinct (context, key) pairs, so one optimizer step per epoch: many epochs.
    det = DeepLog(window=4, epochs=200).fit(vocab.encode(train))
    x_test = vocab.encode(test)
    s = det.score(x_test)
    flagged = s > det.threshold_
    assert not flagged[labels == 0].any()
    # The doubled open, the unseen key and the cut session break the order. The
    # missing terminate (A B B C D) does not, for top-g: after "A B B C" the close D
    # is the model's second choice, inside any g >= 2; the count detectors catch it.
    np.testing.assert_array_equal(np.flatnonzero(flagged[60:]), [1, 2, 3])
    # Scoring wider arrays is allowed (sessions longer than any in training).
    wide = np.hstack([x_test, np.zeros((x_test.shape[0], 5), dtype=np.int64)])
    np.testing.assert_array_equal(det.score(wide), s)
    clone = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(clone.score(x_test), s)
    assert DeepLog(window=4, epochs=1, top_g=3).fit(vocab.encode(train)).threshold_ == 3.0


def test_log_detectors_are_registered_and_validate() -> None:
    assert {"pca_spe", "invariants_mining", "deeplog"} <= set(available())
    assert get("deeplog").input_kind == "sequences"  # type: ignore[attr-defined]
    assert get("pca_spe").input_kind == "counts"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="n_components"):
        create("pca_spe", n_components=1.5)
    with pytest.raises(ValueError, match="term_weighting"):
        create("pca_spe", term_weighting="bm25")
    with pytest.raises(ValueError, match="percentage"):
        create("invariants_mining", percentage=1.0)
    with pytest.raises(ValueError, match="window"):
        create("deeplog", window=0)
    with pytest.raises(ValueError, match="non-negative"):
        PCAResidual().fit(np.array([[1.0, -1.0], [0.0, 2.0]]))
    with pytest.raises(ValueError, match="integer"):
        DeepLog().fit(np.array([[1.5, 2.0], [1.0, 2.0]]))
