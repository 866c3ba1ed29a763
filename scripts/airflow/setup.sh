#!/usr/bin/env bash
# Create .venv-airflow: Apache Airflow 3.x + the Apache Spark provider, in their own
# virtual environment (the provider pulls a pyspark client that conflicts with the
# project's pyspark 3.5 pin). This is the only network step for Airflow; afterwards
# `airflow dags test` runs offline against the project's own spark-submit.
set -euo pipefail
cd "$(dirname "$0")/../.."
AIRFLOW_VERSION="${AIRFLOW_VERSION:-3.1.8}"
SPARK_PROVIDER_VERSION="${SPARK_PROVIDER_VERSION:-}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
# AIRFLOW_VENV: where to create it (tests time a from-scratch install in a temp dir).
VENV="${AIRFLOW_VENV:-.venv-airflow}"
PY_MINOR="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
CONSTRAINTS_URL="https://raw.githubusercontent.com/apache/airflow/constraints-${AIRFLOW_VERSION}/constraints-${PY_MINOR}.txt"
# The tested lock (pip freeze of a working .venv-airflow) wins; otherwise Airflow's
# published constraints file, fetched once into .cache/airflow/.
LOCK="scripts/airflow/constraints-${AIRFLOW_VERSION}-${PY_MINOR}.txt"
CONSTRAINTS=.cache/airflow/constraints-${AIRFLOW_VERSION}-${PY_MINOR}.txt

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
mkdir -p .cache/airflow
if [ -s "$LOCK" ]; then
  CONSTRAINTS="$LOCK"
elif [ ! -s "$CONSTRAINTS" ]; then
  curl -fsSL --max-time 60 -o "$CONSTRAINTS.tmp" "$CONSTRAINTS_URL" && mv "$CONSTRAINTS.tmp" "$CONSTRAINTS" \
    || { rm -f "$CONSTRAINTS.tmp"; echo "airflow-setup: cannot fetch $CONSTRAINTS_URL" >&2; }
fi
provider="apache-airflow-providers-apache-spark${SPARK_PROVIDER_VERSION:+==$SPARK_PROVIDER_VERSION}"
if [ -s "$CONSTRAINTS" ]; then
  "$VENV/bin/python" -m pip install --quiet "apache-airflow==${AIRFLOW_VERSION}" "$provider" \
    --constraint "$CONSTRAINTS"
else
  # Airflow's constraints live on GitHub; where only the package index is reachable,
  # fall back to pip's resolver with Airflow itself pinned (and say so).
  echo "airflow-setup: WARNING installing without a constraints file" >&2
  "$VENV/bin/python" -m pip install --quiet "apache-airflow==${AIRFLOW_VERSION}" "$provider"
fi
"$VENV/bin/airflow" version
touch "$VENV/.installed"
