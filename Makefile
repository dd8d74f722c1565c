# The two commands of the README:
#   make demo   set up, migrate the example app on SQLite, drive requests, print the rows
#   make test   set up, then ruff, mypy --strict and the whole test suite
# and for working on it: make serve, make docs, make bench (see README.rst).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 5000

.PHONY: demo test lint docs bench serve clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# One stamp per set of extras: the demo installs the package and the example
# app only; the tests add the linters, the browser tests' and the docs' tools.
$(VENV)/.installed-demo: setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[example]'
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test,example]'
	touch $@ $(VENV)/.installed-demo

demo: $(VENV)/.installed-demo
	$(PY) -m example_app.demo

# From the checkout's root, where the example_app package is importable; the
# app factory points Flask-Migrate at example_app/migrations. Listens on
# 127.0.0.1 only and prints a one-time sign-in link to the dashboard (the
# link works once, from this machine; a new run prints a new one).
serve: $(VENV)/.installed-demo
	FLASK_APP=example_app:create_app $(PY) -m flask db upgrade
	FLASK_APP=example_app:create_app $(PY) -m flask seed
	@token="$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(24))')"; \
	echo ""; \
	echo "Dashboard: http://127.0.0.1:$(PORT)/_telemetry/ (for the admin, stepped up)"; \
	echo "Sign in once from this machine:"; \
	echo "  http://127.0.0.1:$(PORT)/auth/demo-login?token=$$token"; \
	echo ""; \
	DEMO_LOGIN_TOKEN="$$token" FLASK_APP=example_app:create_app \
	    exec $(PY) -m flask run --host 127.0.0.1 --port $(PORT)

lint: $(VENV)/.installed-test
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
# The HTML documentation in docs/_build/html, warnings as errors (as the tests do).
docs: $(VENV)/.installed-test
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

bench: $(VENV)/.installed-test
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
