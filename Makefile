# clothes-serverless: `make all` builds every artifact, `make test` checks everything.
VENV := .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: all repro test lint clean

all: $(VENV)/.installed repro

$(VENV)/.installed: requirements.txt lambda/requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	touch $@

repro: $(VENV)/.installed
	dvc repro
	dvc metrics show

lint: $(VENV)/.installed
	ruff check .
	ruff format --check .

test: lint
	pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
