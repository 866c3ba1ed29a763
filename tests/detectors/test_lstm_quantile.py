"""The torch LSTM quantile forecaster: calibrated intervals, a useful median, determinism."""

from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys

import numpy as np
import pytest

from udfs.detectors.registry import create

torch = pytest.importorskip("torch")

PERIOD, NOISE, N_TRAIN, N_TEST = 24, 0.3, 600, 600
PARAMS = {"context": 32, "epochs": 30}


def _sine(seed: int = 0, n: int = N_TRAIN + N_TEST) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (10 + 3 * np.sin(2 * np.pi * t / PERIOD) + rng.normal(0, NOISE, n)).reshape(-1, 1)


@pytest.fixture(scope="module")
def fitted() -> tuple[object, np.ndarray]:
    x = _sine()
    return create("lstm_quantile", **PARAMS).fit(x[:N_TRAIN]), x


def test_interval_covers_held_out_points(fitted: tuple[object, np.ndarray]) -> None:
    det, x = fitted
    q = det.forecast(x)[N_TRAIN:, 0, :]  # type: ignore[attr-defined]
    y = x[N_TRAIN:, 0]
    assert (q[:, 0] <= q[:, 1]).all() and (q[:, 1] <= q[:, 2]).all()
    covered = np.mean((q[:, 0] <= y) & (y <= q[:, 2]))
    assert 0.90 <= covered <= 1.0, covered
    # Not covering by being uselessly wide: the exact 98% interval of the noise is
    # 2 * 2.326 * 0.3 = 1.4 wide, the whole seasonal swing is 6.
    assert np.mean(q[:, 2] - q[:, 0]) < 2.5


def test_median_beats_the_naive_forecast(fitted: tuple[object, np.ndarray]) -> None:
    det, x = fitted
    med = det.forecast(x)[N_TRAIN:, 0, 1]  # type: ignore[attr-defined]
    y = x[N_TRAIN:, 0]
    naive = x[N_TRAIN - 1 : -1, 0]
    mae, naive_mae = np.abs(y - med).mean(), np.abs(y - naive).mean()
    assert mae < 0.75 * naive_mae, (mae, naive_mae)


def test_planted_spikes_fall_outside_the_interval(fitted: tuple[object, np.ndarray]) -> None:
    det, x = fitted
    spiked = x.copy()
    rows = [N_TRAIN + 50, N_TRAIN + 211, N_TRAIN + 380, N_TRAIN + 555]
    spiked[rows, 0] += [4.0, -4.0, 2.5, -2.5]
    s = det.score(spiked)  # type: ignore[attr-defined]
    assert (s[rows] > 1).all(), s[rows]
    # Only the spike is flagged, not the row after it (the spike is in its context).
    after = [r + 1 for r in rows]
    assert (s[after] < s[rows]).all(), (s[after], s[rows])


def test_same_seed_same_scores_other_seed_different() -> None:
    x = _sine(1)
    a = create("lstm_quantile", **PARAMS, random_state=3).fit(x[:N_TRAIN]).score(x)
    b = create("lstm_quantile", **PARAMS, random_state=3).fit(x[:N_TRAIN]).score(x)
    c = create("lstm_quantile", **PARAMS, random_state=4).fit(x[:N_TRAIN]).score(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pickle_drops_the_module_and_scores_identically(
    fitted: tuple[object, np.ndarray],
) -> None:
    det, x = fitted
    det.score(x[:10])  # type: ignore[attr-defined]
    state = det.__getstate__()  # type: ignore[attr-defined]
    assert "net_" not in state
    assert all(isinstance(v, np.ndarray) for v in state["weights_"].values())
    clone = pickle.loads(pickle.dumps(det))
    assert not hasattr(clone, "net_")
    np.testing.assert_array_equal(det.score(x), clone.score(x))  # type: ignore[attr-defined]


def test_leaves_torch_threads_and_global_rng_alone() -> None:
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    x = _sine(2, 200)
    create("lstm_quantile", context=8, epochs=2).fit(x[:100]).score(x)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.rand(3), expected)


def test_explains_the_column_that_jumped() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(400)
    x = np.column_stack(
        [np.sin(2 * np.pi * t / PERIOD), np.cos(2 * np.pi * t / PERIOD)]
    ) + rng.normal(0, 0.1, (400, 2))
    det = create("lstm_quantile", context=24, epochs=20).fit(x[:200])
    spiked = x.copy()
    spiked[300, 1] += 2.0
    s = det.score(spiked)
    assert int(np.argmax(s)) == 300
    assert det.explain(spiked[:301])[300][0][0] == 1  # type: ignore[attr-defined]


def test_missing_torch_fails_at_config_time(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    with pytest.raises(ImportError, match=r"pip install -e \"\.\[deep\]\""):
        create("lstm_quantile")


def test_registry_imports_without_torch() -> None:
    code = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError("No module named 'torch'")

sys.meta_path.insert(0, NoTorch())
from udfs.detectors.registry import available, create
assert "lstm_quantile" in available() and "torch" not in sys.modules
try:
    create("lstm_quantile")
except ImportError as exc:
    assert 'pip install -e ".[deep]"' in str(exc), exc
else:
    raise AssertionError("created without torch")
"""
    subprocess.run([sys.executable, "-c", code], check=True)
