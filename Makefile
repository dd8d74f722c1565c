# The two commands of the README:
#   make demo   set up, migrate the example app on SQLite, drive requests, print the rows
#   make test   set up, then ruff, mypy --strict and the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench serve clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,example]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m example_app.demo

# From the checkout's root, where the example_app package is importable; the
# app factory points Flask-Migrate at example_app/migrations.
serve: $(VENV)/.installed
	FLASK_APP=example_app:create_app $(PY) -m flask db upgrade
	FLASK_APP=example_app:create_app $(PY) -m flask seed
	FLASK_APP=example_app:create_app $(PY) -m flask run

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Each run gets a temporary folder of its own: pytest's clean-up of old
# folders under a shared one can race with another run on the machine.
test: lint
	$(VENV)/bin/pytest --basetemp="$$(mktemp -d /tmp/flask-telemetry-tests.XXXXXX)"

# make bench [BENCH_ARGS=--quick]: overhead next to bare Flask and peers; needs
# PostgreSQL and MariaDB on 127.0.0.1 (see benchmarks/README.rst); writes the
# Performance section of README.rst and docs/_static/benchmark.png.
bench: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
