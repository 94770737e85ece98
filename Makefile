# One entry point for people and CI. `make test` is exactly what CI runs (.ci/run).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed

.PHONY: demo test test-latest system-packages bench lint typecheck docs install lock clean

EMULATOR := aws-batch-emulator

# uv.lock is the environment: every package at the version CI tested, with its hashes. uv itself
# is locked too; pip bootstraps that version, then the sync keeps it. uv uses this machine's
# python3 (it never downloads one) and the venv at $(VENV).
UV_VERSION = $(shell sed -n '/^name = "uv"$$/{n;s/^version = "\(.*\)"$$/\1/p;}' uv.lock)
UV_BOOTSTRAP = $(PY) -m pip install --quiet uv==$(UV_VERSION)
# The uv in $(VENV) now ("uv 0.13.9 (...)" -> 0.13.9), read when a recipe using it starts
UV_INSTALLED = $(word 2,$(shell $(UV) --version 2>/dev/null))
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(UV_BOOTSTRAP)

# --locked: a pyproject.toml changed without `make lock` stops here instead of drifting. A lock
# that moved uv to another version gets it bootstrapped first (an older uv may not read a newer
# lock); the uv the rule above just installed is that version already, so a fresh clone runs
# pip once. --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (CI, this machine) no process
# caches the libraries' bytecode; compiled once here, each of the suite's Python processes (the
# test processes, every worker and CLI child) starts without recompiling celery, boto3 and the rest.
$(STAMP): uv.lock pyproject.toml $(EMULATOR)/pyproject.toml | $(UV)
	$(if $(filter $(UV_VERSION),$(UV_INSTALLED)),,$(UV_BOOTSTRAP))
	$(UV) sync --locked --all-extras --all-packages --compile-bytecode --python $(PY)
	touch $(STAMP)

install: $(STAMP)  ## create .venv with uv.lock's exact versions of poller, the emulator and the dev tools

lock: | $(UV)  ## refresh uv.lock to the newest versions pyproject allows (then `make test`, and commit both)
	$(UV) lock --upgrade

test-latest:  ## the newest allowed versions in .venv-latest (a user's pip install): demo, lint, types, fast tier; what differs from uv.lock
	.ci/test-latest

system-packages:  ## the Debian packages the suite needs (installed as root, else the command to run is named)
	.ci/system-packages

lint: $(STAMP)  ## ruff lint and format check; the layers' import contracts (import-linter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)  ## mypy --strict on the package
	$(VENV)/bin/mypy

docs: $(STAMP)  ## the manual (docs/, mkdocs.yml) built into site/, strict: a broken link or anchor fails
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

demo: $(STAMP)  ## the whole stack on this machine, real jobs going through their states; it stops when they end (ARGS=--keep: stays up until Ctrl-C)
	$(VENV)/bin/poller demo $(ARGS)

bench: $(STAMP)  ## coalesced vs per-job DescribeJobs, throttled submits; detection with the defaults, polling vs events; the endpoint's and the events consumer's own rates; the per-job floor of Celery and botocore
	$(PY) bench/tracking.py --jobs 1000 --jobs 10000
	$(PY) bench/detection.py --jobs 200 --jobs 1000 --jobs 10000
	$(PY) bench/detection.py --jobs 5000 --min-seconds 20 --max-seconds 60 --workers 1 --mode events
	$(PY) bench/metrics_cost.py
	$(PY) bench/emulator_scale.py --jobs 10000 --events
	$(PY) bench/events_consumer.py --jobs 1000 --threads 1 --threads 4
	$(PY) bench/floors.py

# The fast in-process tier first (stops at its first failure, and then nothing else runs), then
# the tiers that start real servers; coverage adds up over both. A module stays in one test
# process (--dist loadfile) so that it shares its servers. The fast tier is CPU-bound: one process
# per core. The real-server tier mostly waits on jobs, timeouts and restarts (measured: 75 % of
# the 2 cores busy with 3 processes, 389 s with 2 against 295 s with 3): one process more.
FAST := -n 2 --dist loadfile --durations=15
REAL_SERVERS := -n 3 --dist loadfile --durations=15
test: system-packages lint typecheck docs  ## everything CI runs: lint, types, the docs, the whole test suite
	$(PY) -m pytest -m "not integration" -x $(FAST) --cov-fail-under=0 --cov-report=
	$(PY) -m pytest -m integration $(REAL_SERVERS) --cov-append

clean:
	rm -rf $(VENV) .venv-latest .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
