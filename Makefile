# edgetune: `make reproduce` regenerates every figure, table and claim; `make test` runs the unit and notebook
# tests. Both create .venv and install the package on first use (and again when pyproject.toml changes).

PYTHON ?= python3
PROFILE ?= default
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(wildcard notebooks/*.ipynb)
CI_DIR := runs/ci

.PHONY: reproduce test unit notebooks lint format benchmarks lab clean

$(STAMP): pyproject.toml .ci/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c .ci/constraints.txt -e '.[dev]'
	$(BIN)/python -c "import torchvision, timm, papermill, nbval"  # fail early on a broken torch/torchvision pair
	touch $(STAMP)

reproduce: $(STAMP)
	$(BIN)/edgetune reproduce --profile $(PROFILE)

test: unit notebooks

unit: $(STAMP)
	$(BIN)/pytest -q tests

# Each notebook gets the smoke profile injected (papermill --prepare-only), then nbval executes it. Its figures
# and ledger go under runs/ci/figures so the committed figures/ of `make reproduce` stay untouched.
notebooks: $(STAMP)
	rm -rf $(CI_DIR) && mkdir -p $(CI_DIR)
	for nb in $(NOTEBOOKS); do \
	  $(BIN)/papermill --prepare-only "$$nb" "$(CI_DIR)/$$(basename $$nb)" -p profile smoke -k python3 -l python \
	    --no-progress-bar || exit 1; \
	done
	EDGETUNE_FIGURES=$(CURDIR)/$(CI_DIR)/figures $(BIN)/pytest -q -p no:cacheprovider --nbval-lax \
	  --nbval-current-env --nbval-cell-timeout=600 $(CI_DIR)

lint: $(STAMP)
	$(BIN)/ruff check edgetune tests benchmarks
	$(BIN)/ruff format --check edgetune tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix edgetune tests benchmarks
	$(BIN)/ruff format edgetune tests benchmarks

benchmarks: $(STAMP)
	$(BIN)/python -m benchmarks.run

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(CI_DIR) runs/notebooks .pytest_cache .ruff_cache
