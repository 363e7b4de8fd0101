# unibatch developer commands. Every target creates .venv when it is missing, so any of them
# can be the first command typed on a fresh machine with only Python installed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test soak lint bench bench-distributed clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Reinstall an extra only when pyproject.toml changed since it was last installed.
$(VENV)/.installed-%: pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[$*]"
	touch $@

demo: $(VENV)/.installed-demo
	$(PY) -m unibatch demo

# The distributed tests start servers (Ray, an S3-compatible moto server), so they run in a
# private network namespace with nothing but loopback: no packet can leave the machine.
# `unshare -r` maps the user to root inside a new user namespace, so this needs no privileges.
test: $(VENV)/.installed-test
	$(PY) -m pytest -q -m "not distributed and not soak"
	unshare -rn sh -c 'ip link set lo up && RAY_USAGE_STATS_ENABLED=0 exec $(PY) -m pytest -q -m distributed tests/distributed'

# Long fault and concurrency runs (readers beside a writer for 60 s per read pattern, ...).
soak: $(VENV)/.installed-test
	$(PY) -m pytest -q -m soak

lint: $(VENV)/.installed-lint
	$(PY) -m ruff check src tests
	$(PY) -m ruff format --check src tests
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info

bench: $(VENV)/.installed-test
	$(PY) -m benchmarks --json

# Ray actors against the same buffer in process, inside a private network namespace like the tests.
bench-distributed: $(VENV)/.installed-test
	unshare -rn sh -c 'ip link set lo up && RAY_USAGE_STATS_ENABLED=0 exec $(PY) -m benchmarks.distributed --json'
