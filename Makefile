# The two set-up commands of the README. Each creates .venv if missing, installs what it needs,
# and is idempotent: a stamp file per extras set is only remade when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data
# torch is pinned in pyproject.toml (2.13.0) so pip takes the local CPU build.
TEST_EXTRAS := dev,retrieval,llamaindex
DEMO_EXTRAS := retrieval

.PHONY: test demo venv clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(TEST_EXTRAS)]'
	@touch $@

$(VENV)/.stamp-demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(DEMO_EXTRAS)]'
	@touch $@

venv: $(VENV)/.stamp-test

test: $(VENV)/.stamp-test
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest

demo: $(VENV)/.stamp-demo
	@DATA=$(DATA) BIN=$(BIN) bash scripts/demo.sh

clean-venv:
	rm -rf $(VENV)
