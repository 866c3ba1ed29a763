"""python -m lakehound.quality.logs on a small HDFS-layout directory written here:
the JSON it writes, and errors naming the file, row and column at fault."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lakehound.quality import logs as Q

NORMAL = ["5 5 22 11 9 11 9 26 26", "22 5 5 11 9 11 9 26 26", "5 22 5 11 9 26 11 9 26"]


def _write(d: Path, labelled: list[tuple[str, int]]) -> None:
    (d / Q.TRAIN_FILE).write_text("\n".join(NORMAL * 20) + "\n")
    rows = ["Sequence,label", *[f"{s},{y}" for s, y in labelled]]
    (d / Q.TEST_FILE).write_text("\n".join(rows) + "\n")


def test_cli_scores_every_detector_and_writes_json(tmp_path: Path) -> None:
    # Anomalies: a session without its closing 26s (11 != 26 invariant), an unseen key 7.
    labelled = [(s, 0) for s in NORMAL] + [("5 5 22 11 9 11 9", 1), ("5 5 22 11 9 7 11 9 26 26", 1)]
    _write(tmp_path, labelled)
    out = tmp_path / "out" / "hdfs.json"
    rc = Q.main(
        ["--hdfs-sessions", str(tmp_path), "--detectors", "invariants_mining", "--out", str(out)]
    )
    assert rc == 0
    r = json.loads(out.read_text())
    assert (r["train_sessions"], r["test_sessions"], r["test_anomalies"]) == (60, 5, 2)
    im = r["detectors"]["invariants_mining"]
    assert (im["tp"], im["fp"], im["fn"], im["precision"], im["recall"]) == (2, 0, 0, 1.0, 1.0)


def test_cli_bad_input_names_file_row_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, [("5 22", 0), ("5 22", 2)])
    assert Q.main(["--hdfs-sessions", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / Q.TEST_FILE}:3: column 'label' must be 0 or 1, got '2'" in err
    assert Q.main(["--hdfs-sessions", str(tmp_path / "missing")]) == 2
    assert "training file not found" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown detector"):
        Q.evaluate([["a"]], [["a"]], Q.np.array([0]), ["nope"])
