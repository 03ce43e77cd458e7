# glmocr-lf developer and demo targets. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.glmocr-lf-installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.DEFAULT_GOAL := help

.PHONY: help
help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch/torchvision first: on this kind of machine pip takes them from local disk
	$(BIN)/python -m pip install -c constraints.txt torch torchvision
	$(BIN)/python -m pip install -c constraints.txt -e '.[train,eval,dev,kernels]'
	# --no-deps: torchaudio's only release pins torch 2.11, and llamafactory's web/API extras are unused
	$(BIN)/python -m pip install -c constraints.txt --no-deps llamafactory torchaudio
	@touch $(STAMP)

.PHONY: install
install: $(STAMP) ## Create .venv with glmocr-lf and the pinned training stack (constraints.txt)

.PHONY: check
check: install ## Lint (ruff) and type-check (mypy)
	$(BIN)/ruff check glmocr_lf tests bench
	$(BIN)/mypy

# The HTML report test drives a real headless Chromium: Debian's chromium + chromium-driver. Where
# they cannot be installed (no apt-get, not root), the test skips and says why.
.PHONY: browser
browser: ## Install Chromium and its driver with apt-get if missing (the HTML report test uses them)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
			|| echo "make browser: apt-get could not install chromium; the HTML report test will skip"; \
	else echo "make browser: cannot install chromium here (needs apt-get as root); the HTML report test will skip"; fi

.PHONY: test
test: check browser ## Install if needed, lint, type-check and run the whole test suite
	$(BIN)/pytest -q

.PHONY: test-fast
test-fast: install ## Run the tests that do not start llamafactory-cli
	$(BIN)/pytest -q -m "not e2e"

.PHONY: demo
demo: install ## Install if needed, then run the whole pipeline on the bundled sample (CPU, tiny model)
	$(BIN)/glmocr-lf smoke demo --force

.PHONY: golden
golden: install ## Regenerate the golden files under tests/golden
	GLMOCR_LF_REGEN_GOLDEN=1 $(BIN)/pytest -q tests -k golden

.PHONY: bench-startup
bench-startup: install ## Time `glmocr-lf --help` against `llamafactory-cli version`
	$(BIN)/python bench/cli_startup.py

.PHONY: lock
lock: ## Rewrite constraints.txt from the current .venv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^glmocr-lf' > constraints.txt

.PHONY: clean
clean: ## Remove caches and build outputs (keeps .venv)
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache demo
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: distclean
distclean: clean ## Also remove .venv
	rm -rf $(VENV)
