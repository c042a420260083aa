# edgetune: `make reproduce` regenerates every figure, table, claim and report; `make test` runs the unit, notebook
# and browser tests. Both create .venv, install the package and register the Jupyter kernel `edgetune` on first use
# (and again when pyproject.toml changes).

PYTHON ?= python3
PROFILE ?= default
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(wildcard notebooks/*.ipynb)
CI_DIR := runs/ci
CI_ENV := EDGETUNE_FIGURES=$(CURDIR)/$(CI_DIR)/figures EDGETUNE_RUNS=$(CURDIR)/$(CI_DIR)/runs
CI_CLI_ENV := EDGETUNE_CI_FIGURES=$(CURDIR)/$(CI_DIR)/figures EDGETUNE_CI_RUNS=$(CURDIR)/$(CI_DIR)/runs

.PHONY: reproduce test unit notebooks system-deps lint format benchmarks lab clean

$(STAMP): pyproject.toml .ci/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c .ci/constraints.txt -e '.[dev]'
	$(BIN)/python -c "import torchvision, timm, papermill, nbval"  # fail early on a broken torch/torchvision pair
	$(BIN)/edgetune kernel  # the Jupyter kernel `edgetune` that papermill, nbval and the notebooks use
	touch $(STAMP)

reproduce: $(STAMP)
	$(BIN)/edgetune reproduce --profile $(PROFILE)

test: unit notebooks

unit: $(STAMP) system-deps
	$(BIN)/pytest -q -m "not notebook" tests

# Each notebook gets the smoke profile injected (papermill --prepare-only), then nbval executes it; then the smoke
# profile is reproduced through the CLI (reusing nbval's cache) and the executed notebooks, the report and the
# notebook in a real browser are checked. Everything goes under runs/ci, so the committed figures/ stay untouched.
notebooks: $(STAMP) system-deps
	rm -rf $(CI_DIR) && mkdir -p $(CI_DIR)
	$(BIN)/edgetune kernel  # the kernel `edgetune` must be this checkout's Python, whoever registered it last
	for nb in $(NOTEBOOKS); do \
	  $(BIN)/papermill --prepare-only "$$nb" "$(CI_DIR)/$$(basename $$nb)" -p profile smoke -k edgetune -l python \
	    --no-progress-bar || exit 1; \
	done
	$(CI_ENV) $(BIN)/pytest -q -p no:cacheprovider --nbval-lax --nbval-kernel-name edgetune \
	  --nbval-cell-timeout=600 $(CI_DIR)
	$(CI_CLI_ENV) $(BIN)/pytest -q -m notebook tests

# Debian packages the tests need: bubblewrap (the sandbox that scores generated code; scoring refuses to run without
# it) and Chromium with ChromeDriver (the browser test). Installed with apt-get where this runs as root; otherwise
# the tests that need them say what is missing.
SYSTEM_PACKAGES := bubblewrap chromium chromium-driver
system-deps:
	@if command -v bwrap >/dev/null && command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null)) || \
	  echo "note: could not install $(SYSTEM_PACKAGES); the tests that need them will say so"; \
	else echo "note: $(SYSTEM_PACKAGES) missing and not installable here (needs root + apt-get)"; fi

lint: $(STAMP)
	$(BIN)/ruff check edgetune tests benchmarks
	$(BIN)/ruff format --check edgetune tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix edgetune tests benchmarks
	$(BIN)/ruff format edgetune tests benchmarks

benchmarks: $(STAMP)
	$(BIN)/python -m benchmarks.run

# Lab rooted at the project (figures/, docs/ and runs/ reachable from its file browser), opened on notebooks/.
lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks

clean:
	rm -rf $(CI_DIR) runs/notebooks .pytest_cache .ruff_cache
