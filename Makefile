# unibatch developer commands. Every target creates .venv when it is missing, so any of them
# can be the first command typed on a fresh machine with only Python installed.
#
# Every install goes through constraints.txt, the lock: exact versions of every package that
# `make demo` and `make test` install, build tools (pip, setuptools, wheel) included, so a fresh
# clone tests what the suite passed with. `make lock` regenerates it from pyproject.toml's ranges;
# `make test-latest` runs the suite against the newest versions instead, to see drift on purpose.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCK := constraints.txt
# The CPU build of PyTorch: another build of 2.13.0 (or another version) downloads gigabytes.
TORCH := torch==2.13.0+cpu
LOCKED_INSTALL := $(PY) -m pip install --quiet --constraint $(LOCK)
# Tests and lint share one environment, so mypy sees the same libraries the tests run with.
DEV := $(VENV)/.installed-test,lint

.PHONY: demo test lint soak lock test-latest bench bench-distributed clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(LOCKED_INSTALL) pip setuptools wheel

# Reinstall an extra only when pyproject.toml or the lock changed since it was last installed.
# No build isolation: the package is built with the locked setuptools installed above.
$(VENV)/.installed-%: pyproject.toml $(LOCK) | $(PY)
	$(LOCKED_INSTALL) --no-build-isolation -e ".[$*]"
	touch $@

demo: $(VENV)/.installed-demo
	$(PY) -m unibatch demo

# The distributed tests start servers (Ray, an S3-compatible moto server), so they run in a
# private network namespace with nothing but loopback: no packet can leave the machine.
# `unshare -r` maps the user to root inside a new user namespace, so this needs no privileges.
# Soak and long fault runs are marked `soak` and run in `make soak` only.
define run_suite
	$(1) -m pytest -q -m "not distributed and not soak" $(2)
	unshare -rn sh -c 'ip link set lo up && RAY_USAGE_STATS_ENABLED=0 exec $(1) -m pytest -q -m "distributed and not soak" $(2) tests/distributed'
endef

test: lint
	$(call run_suite,$(PY))

soak: $(DEV)
	$(PY) -m pytest -q -m soak

lint: $(DEV)
	$(PY) -m ruff check src tests
	$(PY) -m ruff format --check src tests
	$(PY) -m mypy

# Resolve pyproject.toml's ranges afresh in a throw-away environment and write what was installed.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	.venv-lock/bin/python -m pip install --quiet -e ".[test,lint,demo]" "$(TORCH)"
	{ echo "# The lock: exact versions of everything 'make test' and 'make demo' install (pip constraints)."; \
	  echo "# Made by 'make lock' from pyproject.toml with $$(.venv-lock/bin/python --version) on $$(uname -sm); do not edit."; \
	  .venv-lock/bin/python -m pip freeze --all --exclude-editable; } > $(LOCK)
	rm -rf .venv-lock

# The suite against the newest versions the index offers (not in CI): drift seen on purpose.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	.venv-latest/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[test,lint]" "$(TORCH)"
	.venv-latest/bin/python -m pip list --format=freeze > .venv-latest/versions.txt
	.venv-latest/bin/python -m ruff check src tests
	.venv-latest/bin/python -m mypy
	$(call run_suite,.venv-latest/bin/python)

clean:
	rm -rf $(VENV) .venv-lock .venv-latest .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info

bench: $(DEV)
	$(PY) -m benchmarks --json

# Ray actors against the same buffer in process, inside a private network namespace like the tests.
bench-distributed: $(DEV)
	unshare -rn sh -c 'ip link set lo up && RAY_USAGE_STATS_ENABLED=0 exec $(PY) -m benchmarks.distributed --json'
