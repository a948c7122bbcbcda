"""The real-SGLang tier: ``sglang.Engine`` 0.5.23 on CPU (``make test-sglang`` builds .venv-sglang).

Collected only where sglang is installed (the main suite's venv never has it: there the recording
stand-in in tests/fixtures/sglang.py is used). The header line says which mode runs: ``real
kernels`` (the kit's CPU kernel wheel, AMX CPUs) or ``shim`` (SGLang's torch-native layers, kernel
package replaced by the import-only shim in tests/sglang/shim, CPUs without AMX). Each module starts
ONE engine (module-scoped fixtures): a start costs 15-60 s on 2 quiet cores.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("sglang") is None:
    collect_ignore_glob = ["test_*.py"]


def tier_mode() -> str:
    import sgl_kernel

    if getattr(sgl_kernel, "SHIM", False):
        return "shim (SGLang's torch-native layers, kernel package replaced by an import-only shim)"
    return "real kernels (the kit's sgl_kernel CPU wheel)"


def pytest_report_header(config):
    if importlib.util.find_spec("sglang") is None:
        return None
    return f"sglang tier: {tier_mode()}"
