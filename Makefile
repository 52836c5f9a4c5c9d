# Ferry: every target installs what it needs into .venv first, so a fresh machine needs only Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
USER ?= alice
DEVICE ?= default
ROLE ?=
# The fleet's packages that exist so far (a service appears when its issue lands).
PACKAGES := $(patsubst %/__init__.py,%,$(wildcard shared/__init__.py gateway/__init__.py \
	media_service/__init__.py message_service/__init__.py transcode_worker/__init__.py \
	devstack/__init__.py))

.DEFAULT_GOAL := help
.PHONY: help install localstack run token test test-unit lint format typecheck bench bench-tools docs all clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the fleet with its dev tools

# LocalStack (S3 and SQS that enforce presigned signatures) needs CPython 3.13: its own venv.
LOCALSTACK_VENV := .venv-localstack
LOCALSTACK_STAMP := $(LOCALSTACK_VENV)/.installed
# The first CPython 3.13 that runs (a pyenv shim may exist without the version being active).
LOCALSTACK_PYTHON ?= $(shell for p in $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) python3.13; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && echo $$p && break; done)

$(LOCALSTACK_STAMP): devstack/localstack-requirements.txt
	@test -n "$(firstword $(LOCALSTACK_PYTHON))" || { echo "make localstack needs python3.13 (LOCALSTACK_PYTHON=...)"; exit 1; }
	rm -rf $(LOCALSTACK_VENV)
	$(firstword $(LOCALSTACK_PYTHON)) -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet --no-deps -r devstack/localstack-requirements.txt
	$(LOCALSTACK_VENV)/bin/python -c 'import localstack.runtime.main'
	@touch $(LOCALSTACK_STAMP)

localstack: $(LOCALSTACK_STAMP) ## install LocalStack (S3, SQS) into .venv-localstack for S3=localstack and its tests

run: $(STAMP) ## start the emulator, bootstrap AWS resources and every service (Ctrl-C stops all); S3=localstack
	$(if $(filter localstack,$(S3)),$(MAKE) localstack)
	$(BIN)/python -m devstack.run $(if $(S3),--s3 $(S3))

token: $(STAMP) ## print a dev token: make token USER=alice [DEVICE=phone] [ROLE=admin]
	@$(BIN)/python -m devstack.token $(USER) --device $(DEVICE) $(if $(ROLE),--role $(ROLE))

test: $(STAMP) ## run every test (unit and integration, real processes)
	$(BIN)/python -m pytest

test-unit: $(STAMP) ## run the pure unit tests only
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP) ## ruff check and format check, import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP) ## mypy, strict
	$(BIN)/mypy $(PACKAGES) scripts bench tests

# The bench's anchors: the ffmpeg CLI (apt, when root) and libvips (the pyvips-binary wheel, else
# apt's libvips42). Whatever cannot be installed is skipped by the bench with a line saying so.
bench-tools: $(STAMP) ## install the bench's anchors where missing (ffmpeg CLI, pyvips + libvips)
	@command -v ffmpeg >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null 2>&1 || \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; } || \
	    echo "bench: could not install ffmpeg: its anchors are skipped"; \
	  else echo "bench: no ffmpeg CLI (and not root to apt-get it): its anchors are skipped"; fi; }
	@$(BIN)/python -c 'import pyvips' 2>/dev/null || \
	  $(BIN)/python -m pip install --quiet pyvips pyvips-binary 2>/dev/null || \
	  { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvips42 >/dev/null 2>&1 \
	    && $(BIN)/python -m pip install --quiet pyvips; } || \
	  echo "bench: no pyvips/libvips: the pyvips anchor is skipped"

bench: bench-tools ## benchmarks against anchors, numbers never assertions (QUICK=1: ~3 min)
	$(BIN)/python -m bench $(if $(filter-out 0,$(QUICK)),--quick)

docs: $(STAMP) ## regenerate docs/ (OpenAPI, configuration, data model) from the code
	$(BIN)/python scripts/gen_docs.py

all: lint typecheck test ## what CI runs

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .import_linter_cache
