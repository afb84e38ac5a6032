# The two commands: `make run` (Duly with embedded defaults) and `make test` (the whole suite).
# Both create .venv and install what they need, so they work on a fresh clone.

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The locked versions the suite is green with (Python 3.11, linux x86_64; see README "Dependencies"):
# the installer and build tools, the runtime (the Docker image), runtime + test tools (make test, CI).
BUILD_LOCK := requirements-build.lock
LOCK       := requirements.lock
TEST_LOCK  := requirements-test.lock
# `make lock` resolves with uv in a venv of its own; UPGRADE=--upgrade (or "-P fastapi") moves pins.
UV_VERSION := 0.13.9
LOCKER     := .venv-lock
UPGRADE    ?=
LOCK_FLAGS := --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
              --custom-compile-command "make lock" --quiet

.PHONY: run test lint format bench clean lock

# Pinned pip/setuptools/wheel first; then the test lock, hash-checked, with build isolation off so
# durable-rules (an sdist: needs gcc) builds with the pinned setuptools; then Duly itself.
$(STAMP): pyproject.toml $(BUILD_LOCK) $(TEST_LOCK)
	@$(PYTHON) -c 'import sys; v=sys.version_info; sys.exit(0 if (3,11)<=v[:2]<(3,13) else "Duly needs Python 3.11 or 3.12 (durable_rules does not import on 3.13); set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(BUILD_LOCK)
	$(BIN)/pip install --quiet --require-hashes --no-build-isolation -r $(TEST_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/duly dev --demo

test: $(STAMP) lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python bench/workflow_starts.py

$(LOCKER)/bin/uv:
	$(PYTHON) -m venv $(LOCKER)
	$(LOCKER)/bin/pip install --quiet uv==$(UV_VERSION)

# Re-resolve after editing pyproject.toml's dependencies (existing pins are kept where they still
# fit); the runtime lock is constrained to the test lock, so both pin the same versions.
lock: $(LOCKER)/bin/uv
	$(LOCKER)/bin/uv pip compile pyproject.toml --extra test --extra otel $(LOCK_FLAGS) $(UPGRADE) -o $(TEST_LOCK)
	$(LOCKER)/bin/uv pip compile pyproject.toml $(LOCK_FLAGS) -c $(TEST_LOCK) -o $(LOCK)
	printf 'pip\nsetuptools>=77\nwheel\n' | \
	  $(LOCKER)/bin/uv pip compile - $(LOCK_FLAGS) $(UPGRADE) -o $(BUILD_LOCK)

clean:
	rm -rf $(VENV) $(LOCKER) .duly .pytest_cache .mypy_cache .ruff_cache
