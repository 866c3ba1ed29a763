"""Landing-folder mode: JSON-lines and CSV files dropped into a folder are scored once;
their bad rows are quarantined; a second run over the same files changes nothing."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from jobs import stream
from lakehound.cli import RunContext
from lakehound.config import Config, load_config
from lakehound.streaming.batch import BatchScorer
from schemas.transactions import TRANSACTIONS
from tests.streaming.conftest import ROOT, lakehouse_copy, make_events, stream_overrides

pytestmark = pytest.mark.integration


def _rows(root: Path, name: str) -> list[dict[str, object]]:
    return (
        DeltaTable(str(root / "lakehouse" / "transactions" / name)).to_pyarrow_table().to_pylist()
    )


def _landing_config(root: Path, landing: Path, *sets: str) -> Config:
    """The stream on ``root``'s lakehouse, reading the landing folder ``landing``."""
    overrides = [*stream_overrides(root), "stream.source=files", f"stream.landing_dir={landing}"]
    return load_config(ROOT / "conf" / "transactions.yaml", [*overrides, *sets])


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_landing_folder_scored_once_bad_rows_quarantined(
    spark: SparkSession, trained_lakehouse: Path, tmp_path: Path, fmt: str
) -> None:
    root = lakehouse_copy(trained_lakehouse, tmp_path)
    landing = tmp_path / "landing"
    landing.mkdir()
    events = make_events("F", 12)
    bad = {**events[0], "transaction_id": "F-bad", "currency": "XXX"}
    if fmt == "json":
        lines = [json.dumps(e) for e in events] + ["{broken", json.dumps(bad)]
        (landing / "part-1.json").write_text("\n".join(lines) + "\n")
        n_bad = 2
    else:
        with (landing / "part-1.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, TRANSACTIONS.column_names)
            w.writeheader()
            w.writerows([*events, bad])
        n_bad = 1
    cfg = _landing_config(root, landing, f"stream.landing_format={fmt}")
    for _ in range(2):  # the second run finds no new file
        stream.run(spark, cfg, RunContext("stream", None), available_now=True, timeout=300)
        scored = Counter(
            str(r["event_id"]) for r in _rows(root, "scores") if r["detector"] == "ensemble"
            and str(r["event_id"]).startswith("F")
        )  # fmt: skip
        assert scored == Counter(str(e["transaction_id"]) for e in events)
        quarantined = [
            r for r in _rows(root, "quarantine") if str(r["source_file"]).endswith(f"part-1.{fmt}")
        ]
        assert len(quarantined) == n_bad
        assert any("not_in_set:currency" in r["reasons"] for r in quarantined)  # type: ignore[operator]


class _FailsAfterFirstCommit(BatchScorer):
    """Raises once, after its first batch has committed its writes: the failure lands
    between the Delta commits and the checkpoint's, the case the restart must repair."""

    failed = False
    calls = 0

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        self.calls += 1
        super().__call__(batch, batch_id)
        if not self.failed:
            self.failed = True
            raise RuntimeError("injected failure after the batch's writes")


@pytest.mark.parametrize("max_restarts", [1, 0])
def test_failed_query_restarts_from_its_checkpoint_or_ends_the_job(
    spark: SparkSession, trained_lakehouse: Path, tmp_path: Path, max_restarts: int
) -> None:
    root = lakehouse_copy(trained_lakehouse, tmp_path)
    landing = tmp_path / "landing"
    landing.mkdir()
    events = make_events("R", 8)
    (landing / "part-1.json").write_text("".join(json.dumps(e) + "\n" for e in events))
    cfg = _landing_config(root, landing, f"stream.max_restarts={max_restarts}")
    scorer = _FailsAfterFirstCommit(cfg, TRANSACTIONS, query_run="restart-test")
    ctx = RunContext("stream", None)
    if max_restarts == 0:
        with pytest.raises(stream.StreamFailed, match="query score failed 1 times in a row"):
            stream.run(spark, cfg, ctx, available_now=True, timeout=300, scorer=scorer)
        return
    stream.run(spark, cfg, ctx, available_now=True, timeout=300, scorer=scorer)
    # The one batch ran twice, failed then replayed from the checkpoint; the replay
    # found its rows already written: each event scored once.
    assert scorer.failed and scorer.calls == 2
    scored = Counter(
        str(r["event_id"]) for r in _rows(root, "scores") if r["detector"] == "ensemble"
    )
    assert scored == Counter(str(e["transaction_id"]) for e in events)
