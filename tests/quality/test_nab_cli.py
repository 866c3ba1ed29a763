"""``python -m lakehound.quality.nab`` on a NAB-layout directory built here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lakehound.quality import nab


def _layout(root: Path) -> Path:
    # Two series with one obvious spike each, inside its labelled window.
    rng = np.random.default_rng(0)
    windows = {}
    for cat, name, spike in (("catA", "one.csv", 400), ("catB", "two.csv", 450)):
        ts = pd.date_range("2024-01-01", periods=600, freq="5min")
        v = 10 + np.sin(np.arange(600) / 20) + rng.normal(0, 0.1, 600)
        v[spike] += 8.0
        (root / "data" / cat).mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"timestamp": ts, "value": v}).to_csv(root / "data" / cat / name, index=False)
        windows[f"{cat}/{name}"] = [[str(ts[spike - 10]), str(ts[spike + 10])]]
    (root / "windows.json").write_text(json.dumps(windows))
    return root


def test_cli_scores_every_detector_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _layout(tmp_path / "nab")
    out = tmp_path / "out" / "nab.json"
    dets = "robust_zscore,ewma,holt_winters"
    assert nab.main(["--data", str(data), "--out", str(out), "--detectors", dets]) == 0
    got = json.loads(out.read_text())
    assert set(got["results"]) == set(dets.split(","))
    # A spike 8 sigma out inside each window, nothing else: detecting both at once is
    # worth at least 90 (a perfect detector, 100, flags each window's first row).
    assert got["results"]["robust_zscore"]["standard"]["score"] > 90.0
    assert got["likelihood"] is True
    printed = capsys.readouterr().out
    assert "robust_zscore" in printed and "standard" in printed


def test_cli_names_the_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _layout(tmp_path / "nab")
    (data / "data" / "catB" / "two.csv").unlink()
    assert nab.main(["--data", str(data), "--detectors", "ewma"]) == 2
    assert "catB/two.csv" in capsys.readouterr().err
    assert nab.main(["--data", str(tmp_path / "nowhere")]) == 2
    assert "windows.json" in capsys.readouterr().err
