#!/usr/bin/env bash
# `make test-sglang`: the real-SGLang tier. Builds/reuses .venv-sglang (scripts/setup-sglang.sh) and runs
# tests/sglang/ with it. Never fails for want of the kit: prints one line saying it was skipped, and why.
# Prints the mode (real kernels | shim) and the setup and run times.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
line=$(bash scripts/setup-sglang.sh | tail -n 1)
t1=$(date +%s)
case "$line" in
  *skipped*) echo "$line"; exit 0 ;;
esac
mode=$(cat .venv-sglang/.vsd-mode)
case "$mode" in
  shim) echo "sglang tier: mode shim — SGLang's torch-native layers, kernel package replaced by an import-only shim (no AMX here)" ;;
  *) echo "sglang tier: mode real kernels — the kit's sgl_kernel CPU wheel (AMX)" ;;
esac
echo "sglang tier: setup $((t1 - t0)) s"
# Its own torch-extensions cache: .venv-sglang's torch differs from .venv's, and one shared folder
# makes each venv rebuild DeepSpeed's C++ op over the other's (minutes each, tests waiting on the lock).
export TORCH_EXTENSIONS_DIR="$PWD/.cache/torch_extensions-sglang"
status=0
# One pytest process per module: each starts its own sglang.Engine, and an engine started after
# another module's engine and Ray cluster in the same process has ended the process with exit 1
# and no report (seen with test_refine after test_demo); a fresh process per module avoids that.
for module in tests/sglang/test_*.py; do
  .venv-sglang/bin/python -m pytest -q -p no:cacheprovider -m "slow or not slow" --durations=5 "$module" "$@" || status=1
done
t2=$(date +%s)
echo "sglang tier: mode $mode, setup $((t1 - t0)) s, tests $((t2 - t1)) s, exit $status"
exit $status
