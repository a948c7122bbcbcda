#!/usr/bin/env bash
# Idempotent setup of .venv/ in the repo root with the CPU dependency set.
# torch is installed first as torch==2.13.0 (the CPU wheel); an unpinned torch would pull a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# The browser tests drive the distribution's Chromium (Playwright never downloads one): install it
# when it is missing and we may (root with apt-get); otherwise say once what those tests need.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
      || echo "setup: apt-get install chromium failed; the browser tests (tests/show) will fail until it is installed" >&2
  else
    echo "setup: no /usr/bin/chromium (install the chromium package as root); the browser tests need it" >&2
  fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.vsd-setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ]; then
  exit 0
fi
python -m pip install -q --upgrade pip setuptools wheel
python -m pip install -q torch==2.13.0
# deepspeed's build imports torch: build it against the installed CPU torch, not an isolated one.
DS_BUILD_OPS=0 python -m pip install -q --no-build-isolation "deepspeed>=0.19,<0.20"
python -m pip install -q -e ".[test]"
rm -f .venv/.vsd-setup-*
touch "$stamp"
