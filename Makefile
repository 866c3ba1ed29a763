# LakeHound developer entry points. The README's two commands:
#   make demo   -> installs everything (venv, Python packages, JVM jars) and runs the demo
#   make test   -> installs everything, then lint + types + the full test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= conf/transactions.yaml
ARGS ?=
# Spark binds to loopback: works offline, in network namespaces and on laptops on trains.
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(PY))

.PHONY: setup demo serve test test-fast test-integration test-quality lint typecheck test-suite test-lane-checks \
        generate pipeline dist bench bench-smoke clean

# Everything that needs the network happens here, once: Python packages, the locked
# Spark jars, the Kafka broker jars for the live-scoring tests.
setup: $(VENV)/.installed .cache/ivy/.resolved .cache/kafka/.resolved

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,deep,serve]"
	touch $@

# The only network step for the JVM side: Spark's Ivy fetches the locked jars once.
.cache/ivy/.resolved: jars.lock.json $(VENV)/.installed
	$(PY) -m lakehound.jars resolve
	touch $@

generate: setup
	$(PY) -m jobs.generate --config $(CONFIG) $(ARGS)

pipeline: setup
	$(PY) -m jobs.pipeline --config $(CONFIG) $(ARGS)

demo: generate pipeline

# The real-time endpoint on the dataset's production models (README "Endpoint").
serve: setup
	$(PY) -m jobs.serve --config $(CONFIG) $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy lakehound jobs udfs schemas $(wildcard dags/*.py) $(wildcard bench/*.py)

test-fast: setup
	$(PY) -m pytest --durations=30

# The slowest tests are listed at the end: the integration run dominates CI time.
test-integration: setup
	$(PY) -m pytest -m integration --durations=20

test-quality: setup
	$(PY) -m pytest -m quality --durations=10

# Two lanes at once on the 2-core machine: the checks and in-process tiers (lint, mypy,
# fast, quality: CPU-bound) beside the integration tier, which spends most of its time
# waiting on the processes it starts (JVM start-ups, Kafka, Airflow, servers). -k: one
# lane's failure does not stop the other, so a run reports every failure; -Oline keeps
# each output line whole.
test-suite:
	$(MAKE) --no-print-directory -k -j2 -Oline test-lane-checks test-integration

test-lane-checks:
	$(MAKE) --no-print-directory -k -j1 lint typecheck test-fast test-quality

# After set-up nothing may need the network, so where the machine allows it (root,
# iproute2) the suite runs in a fresh network namespace with only loopback.
test: setup setup-ops
	@if unshare -n true 2>/dev/null && command -v ip >/dev/null; then \
	  echo "make test: running the suite offline (unshare -n, loopback only)"; \
	  unshare -n bash -c 'ip link set lo up && $(MAKE) --no-print-directory test-suite'; \
	else \
	  echo "make test: cannot cut the network here; running the suite online"; \
	  $(MAKE) --no-print-directory test-suite; \
	fi

dist: setup
	rm -rf dist && mkdir -p dist
	$(PY) -m pip wheel --quiet --no-deps -w dist .
	$(PY) -m zipfile -c dist/lakehound.zip lakehound jobs udfs schemas

bench-smoke: setup
	$(PY) -m bench.run --smoke

bench: setup
	$(PY) -m bench.run

clean:
	rm -rf lakehouse data spark-warehouse metastore_db derby.log dist build bench/out

# --- Operating it (issue 8): Airflow venv, notebooks venv, Thrift SQL server ---
.PHONY: airflow-setup notebooks-setup chromium-setup setup-ops test-ops notebooks sql sql-server-start sql-server-stop

# Airflow 3 and its Spark provider live in their own venv (the provider's pyspark
# client conflicts with pyspark 3.5); pinned by scripts/airflow/constraints-*.txt.
airflow-setup: .venv-airflow/.installed
.venv-airflow/.installed: scripts/airflow/setup.sh $(wildcard scripts/airflow/constraints-*.txt)
	scripts/airflow/setup.sh

notebooks-setup: .venv-notebooks/.installed
.venv-notebooks/.installed: scripts/notebooks/setup.sh $(VENV)/.installed
	scripts/notebooks/setup.sh

# Both extra venvs, for the integration tests in tests/ops (about 40 s each from scratch);
# `make test` creates them, so CI runs `airflow dags test` and the notebooks for real.
setup-ops: airflow-setup notebooks-setup chromium-setup

# Headless Chromium from Debian's packages: the rendered-page checks (run report) use it.
chromium-setup:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test-ops: setup setup-ops
	$(PY) -m pytest tests/ops -m 'integration or not integration'

notebooks: setup notebooks-setup
	.venv-notebooks/bin/python scripts/notebooks/run.py notebooks/*.ipynb

sql-server-start: setup
	$(PY) -m lakehound.sqlserver start --config $(CONFIG) $(ARGS)

sql-server-stop: setup
	$(PY) -m lakehound.sqlserver stop

# A beeline shell on the running server (SQL_PORT if it was started with --port).
SQL_PORT ?= 10000
sql: setup
	PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/beeline -u jdbc:hive2://127.0.0.1:$(SQL_PORT)/default

# --- Live scoring (issue 7): single-node Kafka broker (KRaft) from the Maven Central jars ---
.PHONY: kafka-setup kafka-start kafka-stop

kafka-setup: .cache/kafka/.resolved
.cache/kafka/.resolved: scripts/kafka/pom.xml
	scripts/kafka/kafka.sh setup

kafka-start: kafka-setup
	scripts/kafka/kafka.sh start

kafka-stop:
	scripts/kafka/kafka.sh stop
