# semcache — build, run and test from a fresh clone.
#
#   make run                    the whole stack in the foreground (Ctrl-C stops it)
#   make run CONFIG=f.json      ... with another plugin config (JSON or APIM XML)
#   make run MOCK_LATENCY_MS=0  ... with another mock LLM latency
#   make test                   every test: cargo tests, Envoy config validation, compose/Istio
#                               checks, end-to-end tests with the real Envoy
#   make lint                   rustfmt --check and clippy -D warnings (native and wasm32)
#   make build | wasm | venv | clean
#
# See docs/running.md.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO        ?= cargo
PYTHON       ?= python3
VENV         ?= .venv
PY           := $(VENV)/bin/python
WASM_TARGET  := wasm32-wasip1
WASM         := target/$(WASM_TARGET)/wasm/semcache.wasm
PYTEST_ARGS  ?=
CARGO_TEST_ARGS ?=

# Paths of Redis 8, redis-cli, the RediSearch module, Envoy and the model, from the venv (an
# explicit SEMCACHE_* variable in the environment wins). Exported for the Rust tests.
PATHS_ENV = eval "$$($(PY) scripts/paths.py --env)";

export SEMCACHE_VENV := $(abspath $(VENV))

.PHONY: help
help:
	@sed -n '1,12p' Makefile | sed 's/^# \{0,1\}//'

# --- installs (idempotent, quick when done) -------------------------------------------------

.PHONY: venv
venv:
	@PYTHON=$(PYTHON) scripts/venv.sh

.PHONY: rust-target
rust-target:
	@rustup target list --installed 2>/dev/null | grep -qx '$(WASM_TARGET)' \
	  || { echo "rustup target add $(WASM_TARGET)"; rustup target add $(WASM_TARGET); }

# Debian's docker-compose, only to check envoy/docker-compose.yaml (no Docker engine needed).
.PHONY: compose-tool
compose-tool:
	@if command -v docker-compose >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "apt-get install docker-compose (for the compose file check)"; \
	  apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; \
	else \
	  echo "NOTE: docker-compose is not installed and this is not root; the compose check will be" \
	       "skipped (apt-get install docker-compose)"; \
	fi

# --- builds ---------------------------------------------------------------------------------

# Native binaries: target/release/semcache-{bridge,embedder,mock-llm}, built together with every
# test target in one release build. `cargo test` then compiles nothing, and `make run` and
# `make test` share one set of artifacts: a plain `--bins` build resolves the dependencies'
# features without the dev-dependencies and would compile the whole graph a second time.
# (Release for tests also keeps the embedder's model fast.)
NATIVE_TARGETS := --workspace --lib --bins --tests --examples

.PHONY: build
build:
	$(CARGO) build --release $(NATIVE_TARGETS)

# The filter: target/wasm32-wasip1/wasm/semcache.wasm
.PHONY: wasm
wasm: rust-target
	$(CARGO) build --target $(WASM_TARGET) --profile wasm -p semcache

# --- run ------------------------------------------------------------------------------------

RUN_ARGS = $(if $(CONFIG),--config '$(CONFIG)') $(if $(MOCK_LATENCY_MS),--mock-latency-ms $(MOCK_LATENCY_MS)) $(if $(BACKEND),--backend $(BACKEND))

.PHONY: run
run: venv build wasm
	@exec $(PY) scripts/run.py $(RUN_ARGS)

# --- tests ----------------------------------------------------------------------------------

CARGO_TEST = $(PATHS_ENV) $(CARGO) test --release --workspace --no-fail-fast $(CARGO_TEST_ARGS)
PYTEST     = $(PATHS_ENV) $(PY) -m pytest tests/ $(PYTEST_ARGS)

# Unit and integration tests of every crate (the bridge against a real Redis 8).
.PHONY: cargo-test
cargo-test: venv build
	@echo "cargo test --release --workspace $(CARGO_TEST_ARGS)"; $(CARGO_TEST)

# End-to-end tests with the real Envoy, `envoy --mode validate` on every Envoy config, and the
# docker-compose / Istio checks (tests/).
.PHONY: e2e
e2e: venv build wasm compose-tool
	@echo "pytest tests/ $(PYTEST_ARGS)"; $(PYTEST)

# Both halves run even if the first fails, so one run reports everything.
.PHONY: test
test: venv rust-target compose-tool build wasm
	@status=0; \
	echo "cargo test --release --workspace $(CARGO_TEST_ARGS)"; ( $(CARGO_TEST) ) || status=1; \
	echo "pytest tests/ $(PYTEST_ARGS)"; ( $(PYTEST) ) || status=1; \
	if [ $$status != 0 ]; then echo "make test: FAILED (see above)" >&2; fi; exit $$status

.PHONY: lint
lint: rust-target
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p semcache --target $(WASM_TARGET) -- -D warnings

# --- measurements (not part of CI) ------------------------------------------------------------

# Answer quality through the real stack: target/eval/report.{md,json}.
.PHONY: eval
eval: venv build wasm
	$(PATHS_ENV) $(PY) scripts/eval.py $(EVAL_ARGS)

# Latency, throughput, Redis memory, wasm memory: target/bench/report.{md,json}.
# `make bench QUICK=1` finishes in a few minutes.
.PHONY: bench
bench: venv build wasm
	QUICK=$(QUICK) $(PATHS_ENV) $(PY) scripts/bench.py $(BENCH_ARGS)

# Every cargo-fuzz target for FUZZ_SECONDS (default 60) each; findings go to testdata/fuzz/.
.PHONY: fuzz
fuzz: venv
	FUZZ_SECONDS=$(or $(FUZZ_SECONDS),60) scripts/fuzz.sh

# --- housekeeping ---------------------------------------------------------------------------

.PHONY: clean
clean:
	$(CARGO) clean
	rm -rf .run .pytest_cache tests/__pycache__ scripts/__pycache__

# Also removes the venv (next make re-creates it).
.PHONY: distclean
distclean: clean
	rm -rf $(VENV)
