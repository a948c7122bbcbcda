#!/usr/bin/env bash
# The real-SGLang test tier's venv, .venv-sglang: sglang 0.5.23 from the CPU kit in ../shared/sglang-cpu
# (its setup.sh), plus this project. Idempotent (a stamp per kit + project version). Prints ONE line:
#   "sglang tier: mode real-kernels"  the CPU has AMX: the kit's setup.sh as it is, its kernel wheel included
#   "sglang tier: mode shim"          no AMX: the kit's wheel dies with "Illegal instruction" here, so the same
#                                     install runs without it, and tests/sglang/shim (an import-only stand-in for
#                                     the kernel package) is put on the venv's path: SGLang's torch-native
#                                     layers, kernel package replaced by an import-only shim
#   "sglang tier: skipped (...)"      no kit, or not CPython 3.11 (the kit's target): nothing is built
# and writes the mode to .venv-sglang/.vsd-mode for scripts/test-sglang.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=${VSD_SGLANG_KIT:-../shared/sglang-cpu}
VENV=.venv-sglang
say() { echo "sglang tier: $*"; }

if [ ! -f "$KIT/setup.sh" ]; then say "skipped (no SGLang CPU kit at $KIT)"; exit 0; fi
if ! python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  say "skipped (python3 is not CPython 3.11, the kit's target)"; exit 0
fi
if grep -qw amx_tile /proc/cpuinfo; then MODE=real-kernels; else MODE=shim; fi
# Two stamps: the kit's install (slow, ~4 min) is redone only when the kit or this script changes,
# the project's when pyproject.toml does.
kit_stamp="$VENV/.vsd-kit-$MODE-$(cat "$KIT/setup.sh" "$0" | sha256sum | cut -c1-16)"
project_stamp="$VENV/.vsd-project-$(cat pyproject.toml "$0" | sha256sum | cut -c1-16)"
if [ ! -f "$kit_stamp" ]; then
  if [ "$MODE" = real-kernels ]; then
    bash "$KIT/setup.sh" "$VENV" >&2
  else
    # The kit's own script, less its AMX check, its kernel wheel and its AMX self-test; refuse to run
    # a script these edits no longer fit (the kit changed: update this script with it).
    patched=$(mktemp); trap 'rm -f "$patched"' EXIT
    sed -e 's/^grep -qw amx_tile .*/: no AMX check in shim mode/' \
        -e '/sglang_kernel_cpu-.*\.whl/d' \
        -e '/^SGLANG_USE_CPU_ENGINE=1 .*-c .$/,$d' "$KIT/setup.sh" > "$patched"
    if grep -q -e amx_tile -e 'sglang_kernel_cpu' -e cpu_has_amx_support "$patched" \
       || ! grep -q 'install -q --no-deps sglang==' "$patched"; then
      echo "setup-sglang: $KIT/setup.sh changed; update the shim-mode edits in $0" >&2; exit 1
    fi
    bash "$patched" "$VENV" >&2
  fi
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  if [ "$MODE" = shim ]; then echo "$PWD/tests/sglang/shim" > "$site/vsd_sgl_kernel_shim.pth"; else rm -f "$site/vsd_sgl_kernel_shim.pth"; fi
  rm -f "$VENV"/.vsd-kit-* "$VENV"/.vsd-project-*
  touch "$kit_stamp"
fi
if [ ! -f "$project_stamp" ]; then
  "$VENV/bin/pip" install -q setuptools >&2
  # deepspeed's build imports torch: build it against the venv's torch (as scripts/setup.sh does).
  DS_BUILD_OPS=0 "$VENV/bin/pip" install -q --no-build-isolation "deepspeed>=0.19,<0.20" >&2
  "$VENV/bin/pip" install -q -e ".[test]" >&2
  rm -f "$VENV"/.vsd-project-*
  touch "$project_stamp"
fi
# DeepSpeed's shared-memory op for this venv's torch (~40 s of C++), built here so that under .ci/run,
# which runs this script while `make test` runs, the tier's first training does not wait on it.
ext_dir="$PWD/.cache/torch_extensions-sglang"
if [ ! -f "$ext_dir/deepspeed_shm_comm/deepspeed_shm_comm.so" ]; then
  TORCH_EXTENSIONS_DIR="$ext_dir" "$VENV/bin/python" -c 'from deepspeed.comm.torch import build_shm_op; build_shm_op()' >&2 \
    || echo "setup-sglang: DeepSpeed's shm op did not build here; the first training builds it" >&2
fi
echo "$MODE" > "$VENV/.vsd-mode"
say "mode $MODE"
