# The README's two commands: `make demo` (set up + run the main job) and `make test` (set up + test).
.PHONY: setup demo test test-fast test-sglang bench clean

VENV := .venv
PY := $(VENV)/bin/python
export RAY_AUTH_MODE ?= disabled
export HF_HUB_OFFLINE ?= 1
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
# Ray waits 30 s for a raylet by default; a loaded 2-core machine can need longer.
export RAY_raylet_start_wait_time_s ?= 180

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/vsd demo --out out/demo

# Everything, slow end-to-end, multi-node and fault-injection tests included (a bare `pytest` skips
# the slow ones), in two lanes side by side: scripts/test.sh says why and which.
test: setup
	bash scripts/test.sh

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# The real-SGLang tier (tests/sglang/) in its own venv, .venv-sglang, from ../shared/sglang-cpu: real CPU
# kernels where the CPU has AMX, else SGLang's torch-native layers with an import-only kernel shim;
# skipped with one line where the kit is missing. Prints its mode and times.
test-sglang:
	bash scripts/test-sglang.sh

clean:
	rm -rf out .pytest_cache
