# The README's two commands are `make nightly` and `make test`; each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup nightly search serve test lint format bench feast-apply clean

setup: $(STAMP)

# torch first, pinned to the CPU build; a bare `torch` requirement could pull a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

nightly: $(STAMP)  ## ingest the Python docs demo corpus and embed it into Milvus
	$(BIN)/python -m flows.nightly

search: $(STAMP)  ## make search Q="how do I define a decorator"
	$(BIN)/llmops search "$(Q)"

test: $(STAMP)  ## lint, then unit, integration and end-to-end tests
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

serve: $(STAMP)  ## serve the champion (and challenger) over HTTP on local Ray until Ctrl-C
	$(BIN)/python -m serving

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)  ## every benchmark; results go to benchmarks/RESULTS.md by hand
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

feast-apply: $(STAMP)  ## register the feature definitions (same as `cd feature_repo && feast apply`)
	cd feature_repo && ../$(BIN)/feast apply

clean:
	rm -rf .llmops
