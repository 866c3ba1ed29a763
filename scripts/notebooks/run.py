"""Execute notebooks with nbclient (CI); a failing cell fails the run (exit 1).

    .venv-notebooks/bin/python scripts/notebooks/run.py [--out DIR] notebooks/*.ipynb

Notebooks run with the repository root as working directory. They read the lakehouse
named by LAKEHOUND_LAKEHOUSE (default ./lakehouse, the demo's) with the config in
LAKEHOUND_CONFIG (default conf/transactions.yaml). Executed copies are written to
--out when given; the sources are never modified.
"""

import argparse
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    a = ap.parse_args(argv)
    # The kernel inherits this environment: Spark's Python workers must be the
    # project's interpreter (the kernel's own venv has no pyspark dependencies).
    os.environ.setdefault("PYSPARK_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    failed = 0
    for path in a.notebooks:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb, timeout=a.timeout, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
        )
        try:
            client.execute()
            print("executed", path, flush=True)
        except CellExecutionError as exc:
            failed += 1
            print(f"FAILED {path}:\n{exc}", file=sys.stderr, flush=True)
        if a.out:
            a.out.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, a.out / path.name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
