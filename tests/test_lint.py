"""The tree is clean for ruff (lint and format), as configured in pyproject.toml.

Run as a test so that `make test` (and so CI) fails on a lint error or an unformatted file; the
same checks run before each commit for contributors through .pre-commit-config.yaml.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists():
        return [str(exe)]
    if shutil.which("ruff"):
        return ["ruff"]
    pytest.fail("ruff is not installed: it is part of the test extra (pip install -e .[test])")


@pytest.mark.parametrize("args", [["check", "--output-format", "concise"], ["format", "--check"]])
def test_ruff_is_clean(args: list[str]) -> None:
    proc = subprocess.run([*_ruff(), *args, "."], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"ruff {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
