# The README's two commands are `make nightly` and `make test`; each sets itself up
# (`make ui` too: the Prefect UI with every deployment and a worker).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# The UI test drives this browser (Debian's package: Playwright's own download does not work
# here); set CHROMIUM to another Chromium or Chrome binary where there is no apt-get.
CHROMIUM ?= /usr/bin/chromium
export LLMOPS_CHROMIUM := $(CHROMIUM)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HOST ?= 127.0.0.1
PORT ?= 4200

.PHONY: help setup nightly search serve ui mlflow test test-unit test-integration test-e2e chromium manpages \
	iproute2 lint format bench feast-apply clean

help:  ## this list
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z0-9-]+):.*## (.*)/  \1\t\2/' | expand -t 22

setup: $(STAMP)  ## the virtualenv (torch CPU build, then the locked stack)

# torch first, pinned to the CPU build; a bare `torch` requirement could pull a CUDA build.
# Every package the platform image locks is installed at the lock's version (-c), so this venv,
# CI and the cluster's image agree (infra/image/README.md).
LOCK := infra/image/requirements.lock
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[dev,image]'
	touch $(STAMP)

nightly: $(STAMP)  ## the nightly pipeline on the embedded defaults (ingest → … → canary); `make ui` shows its runs
	$(BIN)/python infra/local/run_nightly.py --host $(HOST) --port $(PORT)

search: $(STAMP)  ## make search Q="how do I define a decorator"
	$(BIN)/llmops search "$(Q)"

test: lint chromium manpages iproute2  ## lint, then every tier: unit, integration, end to end (CI)
	$(BIN)/pytest -q

test-unit: $(STAMP)  ## pure logic: no model load, no service (under a minute)
	$(BIN)/pytest -q tests/unit -m unit

test-integration: $(STAMP) manpages  ## real embedded services: Milvus Lite, Feast, MLflow, Ray, GX
	$(BIN)/pytest -q tests/integration -m integration

test-e2e: $(STAMP) chromium manpages iproute2  ## whole flows under Prefect, the UI, clusters
	$(BIN)/pytest -q tests/e2e -m e2e

serve: $(STAMP)  ## serve the champion (and challenger) over HTTP on local Ray until Ctrl-C
	$(BIN)/python -m serving

ui: $(STAMP)  ## Prefect server + UI on http://$(HOST):$(PORT), all deployments, a worker; Ctrl-C stops
	$(BIN)/python infra/local/run_platform.py --host $(HOST) --port $(PORT)

MLFLOW_PORT ?= 5000
mlflow: $(STAMP)  ## MLflow UI on the platform's tracking store, http://$(HOST):$(MLFLOW_PORT), on the fine-tuning runs
	$(BIN)/llmops mlflow --host $(HOST) --port $(MLFLOW_PORT)

# apt-get only when the browser is missing (CI runs `make test` as root on a clean machine).
chromium:
	@test -x "$(CHROMIUM)" || { \
	  command -v apt-get >/dev/null || { echo "no $(CHROMIUM) and no apt-get: install Chromium, set CHROMIUM=its path" >&2; exit 1; }; \
	  echo "installing Debian's chromium for the UI test"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The drift tests' other-domain traffic: Linux man pages (Debian's `manpages`, section 7).
manpages:
	@test -f /usr/share/man/man7/epoll.7.gz || { \
	  command -v apt-get >/dev/null || { echo "no /usr/share/man/man7: install the Linux man pages (Debian: manpages)" >&2; exit 1; }; \
	  echo "installing Debian's manpages for the drift tests"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq manpages >/dev/null; }

# The multi-host tests make network namespaces with `ip` (and need root or CAP_NET_ADMIN).
iproute2:
	@command -v ip >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "no ip command: install iproute2" >&2; exit 1; }; \
	  echo "installing Debian's iproute2 for the multi-host tests"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; }

lint: $(STAMP)  ## ruff (lint and format) and the import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)  ## fix what ruff can, then format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)  ## every benchmark; results go to benchmarks/RESULTS.md by hand
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

feast-apply: $(STAMP)  ## register the feature definitions (same as `cd feature_repo && feast apply`)
	cd feature_repo && ../$(BIN)/feast apply

clean:  ## remove the local state (.llmops/)
	rm -rf .llmops
