"""The run report as a browser renders it: a headless Chromium screenshot shows the
attribution bars. Chromium is Debian's package, installed by `make setup-ops` (run by
`make test`); without it the test fails rather than skips."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import SparkSession

from lakehound import io, report
from lakehound.config import Config

CHROMIUM = next(
    (p for p in map(shutil.which, ["chromium", "chromium-browser", "google-chrome"]) if p), None
)
D = dt.date(2024, 1, 8)
EXPL = "array<struct<feature:string,value:double,contribution:double,method:string>>"


def _screenshot(page: Path, out: Path) -> np.ndarray:
    from PIL import Image as image

    assert CHROMIUM is not None, "no Chromium: run `make setup-ops` (apt-get install chromium)"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={out}",
            "--window-size=1200,1600",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return np.asarray(image.open(out).convert("RGB"))


@pytest.mark.integration
def test_rendered_report_shows_attribution_bars(
    spark: SparkSession, make_cfg: Callable[..., Config], tmp_path: Path
) -> None:
    cfg = make_cfg("transactions")
    ts = dt.datetime(2024, 1, 8, 12)
    # Only the attribution bars are drawn in pure red (#d62728 positive parts) or
    # blue (#1f77b4 negative parts) as filled rectangles; no other chart here has
    # enough of either colour (the one-event timeline has 2 small dots).
    expl = [("amount", 900.0, 60.0, "tree_shap"), ("hour", 3.0, -15.0, "tree_shap")]
    scores = [
        ("e1", "a", ts, D, det, 0.9, 99.8, True, 0.7, "v1", expl)
        for det in ("isolation_forest", "ensemble")
    ]
    spark.createDataFrame(
        scores,
        "event_id string, entity_id string, event_ts timestamp, event_date date, "
        "detector string, raw_score double, severity double, is_anomaly boolean, "
        f"threshold double, model_version string, explanation {EXPL}",
    ).write.format("delta").save(io.table_path(cfg, "scores"))
    spark.createDataFrame(
        [("e1", "a", ts, D, 99.8, ["isolation_forest"], expl)],
        "event_id string, entity_id string, event_ts timestamp, event_date date, "
        f"severity double, detectors array<string>, explanation {EXPL}",
    ).write.format("delta").save(io.table_path(cfg, "alerts"))
    page = report.write_report(spark, cfg, [D], {"rows_in": 1.0})

    img = _screenshot(page, tmp_path / "report.png")
    red = np.all(np.abs(img.astype(int) - [0xD6, 0x27, 0x28]) <= 8, axis=2)
    blue = np.all(np.abs(img.astype(int) - [0x1F, 0x77, 0xB4]) <= 8, axis=2)
    # Two bar charts: the alert's (amount 71 px to the right of a centred axis, hour a
    # quarter of that to the left, bars 12 px high) and the detector's importance
    # (mean |part|, both red, amount 202 px wide).
    assert blue.sum() > 15 * 10
    assert red.sum() > (71 + 202) * 10
    rows = np.flatnonzero(red.any(axis=1))
    assert rows.max() - rows.min() > 30, "the two charts should sit apart"
