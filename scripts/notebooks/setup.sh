#!/usr/bin/env bash
# Create .venv-notebooks: nbclient + ipykernel for executing notebooks/ in CI, kept out
# of the project venv. A .pth file adds the project venv's site-packages and the repo
# root, so the kernel imports the exact pinned stack (pyspark, delta, lakehound).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-.venv/bin/python}"
VENV="${NOTEBOOKS_VENV:-.venv-notebooks}"
test -x "$VENV/bin/python" || "$(command -v python3.11 || command -v python3)" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet "nbclient==0.10.2" "nbformat==5.10.4" "ipykernel==6.29.5"
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
proj_site="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
printf '%s\n%s\n' "$proj_site" "$PWD" > "$site/lakehound_project.pth"
touch "$VENV/.installed"
