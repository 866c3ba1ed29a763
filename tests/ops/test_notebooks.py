"""Both notebooks executed for real (nbclient, scripts/notebooks/run.py) on small data.

They read the small lakehouse the jobs wrote for the ops tests. The notebooks must
import the project's code and hold no logic of their own: no functions, classes or
lambdas, only calls into ``lakehound``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require

from .conftest import ROOT, OpsLakehouse

pytestmark = pytest.mark.integration

NB_PY = ROOT / ".venv-notebooks" / "bin" / "python"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _code(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def test_notebooks_hold_no_logic() -> None:
    assert {p.name for p in NOTEBOOKS} == {"quickstart.ipynb", "exploration.ipynb"}
    for path in NOTEBOOKS:
        code = "\n".join(_code(path))
        assert "from lakehound import" in code, path
        for word in ("def ", "class ", "lambda", "for ", "while "):
            assert word not in code, f"{path.name} defines logic ({word.strip()!r})"


@pytest.fixture(scope="session")
def notebooks_venv() -> Path:
    # Session-scoped and listed first, so a missing venv fails before the shared
    # lakehouse is built.
    return require(
        NB_PY, "create .venv-notebooks with `make notebooks-setup` (part of `make test`)"
    )


def test_notebooks_execute_on_small_data(
    notebooks_venv: Path, ops_lakehouse: OpsLakehouse, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "LAKEHOUND_LAKEHOUSE": str(ops_lakehouse.cfg.lakehouse),
        "LAKEHOUND_CONFIG": str(ROOT / "conf" / "transactions.yaml"),
    }
    out = subprocess.run(
        [
            str(NB_PY),
            str(ROOT / "scripts" / "notebooks" / "run.py"),
            "--out",
            str(tmp_path),
            *map(str, NOTEBOOKS),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    for path in NOTEBOOKS:
        assert f"executed {path}" in out.stdout
    # The exploration notebook shows the run report: its charts are inline SVG.
    done = json.loads((tmp_path / "exploration.ipynb").read_text())
    html = [
        "".join(o["data"]["text/html"])
        for c in done["cells"]
        for o in c.get("outputs", [])
        if "text/html" in o.get("data", {})
    ]
    assert any("<svg" in h for h in html)
