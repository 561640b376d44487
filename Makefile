# The two commands of the README: `make quickstart` and `make test`. Both set up .venv on first use,
# installing the pinned versions of requirements.lock, so a study can be reproduced later.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKDIR ?= runs/quickstart

.PHONY: setup test test-fast lint format quickstart bench device-check clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test,kernels]'
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest -n 2 -q

# The tests not marked slow (no end-to-end runs, no test over ~5 s): under 2 minutes, while editing.
test-fast: lint
	$(BIN)/python -m pytest -n 2 -q -m "not slow"

# The study of configs/code_math_study.py in miniature: four arms trained, evaluated, routing analysed,
# report written (WORKDIR/report.md).
quickstart: setup
	$(BIN)/python -m experiments.sweep --config configs/code_math_study.py:scale=runlocal \
	    --workdir $(WORKDIR) --parallel 2

bench: setup
	$(BIN)/python benchmarks/train_step.py

# Everything that needs a GPU/TPU, in one run (benchmarks/device_check.sh): WORKDIR/device_check/.
device-check: setup
	bash benchmarks/device_check.sh $(WORKDIR)/device_check

clean:
	rm -rf runs
