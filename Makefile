# The README's two commands: `make demo` (set up + run the main job) and `make test` (set up + test).
.PHONY: setup demo test test-fast bench clean

VENV := .venv
PY := $(VENV)/bin/python
export RAY_AUTH_MODE ?= disabled
export HF_HUB_OFFLINE ?= 1
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/vsd demo --out out/demo

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf out .pytest_cache
