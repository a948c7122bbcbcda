"""The sglang backend's shared half: starting ``sglang.Engine`` and its preflight check.

Both the engine (``vsd/annotate/engines/sglang.py``, images) and the refiner
(``vsd/refine/sglang.py``, text) start ``sglang.Engine`` the same way, from here. sglang itself is
imported only when an engine starts (CPU nodes never have it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from vsd.errors import VSDError
from vsd.serving import actor_cpus

SGLANG_MISSING = "sglang is not installed (GPU nodes: pip install 'llava-vsd[gpu]')"

# What SGLang's CPU engine needs (device: cpu; tests, AMX CPUs): attention in plain torch (the
# intel_amx backend needs a patched kernel and head sizes divisible by 32), no CUDA graphs or
# overlap scheduling, no warm-up request, a small KV pool in host memory. engine_args override them.
CPU_ENGINE_ARGS = {
    "attention_backend": "torch_native",
    "disable_cuda_graph": True,
    "disable_overlap_schedule": True,
    "skip_server_warmup": True,
    "mem_fraction_static": 0.05,
    "max_total_tokens": 4096,
}


def start_sglang(
    what: str,
    kwargs: dict[str, Any],
    *,
    cpu_workers: int | None = None,
    factory: Callable[..., Any] | None = None,
    hint: str = "",
    error: type[VSDError] = VSDError,
) -> Any:
    """``sglang.Engine(**kwargs)`` (or ``factory(**kwargs)``, a test's stand-in), after setting
    ``SGLANG_CPU_WORKERS`` to ``cpu_workers`` or the actor's CPUs so SGLang's CPU-side pools do not
    oversubscribe the node (and ``SGLANG_USE_CPU_ENGINE`` for ``device="cpu"``). A missing sglang is
    one ``error`` line naming ``what`` (and ``hint``). ``kwargs`` must have passed ``local_model``
    and ``check_engine_args`` already."""
    os.environ["SGLANG_CPU_WORKERS"] = str(cpu_workers or actor_cpus())
    if kwargs.get("device") == "cpu":  # selects SGLang's CPU platform; read once, before sglang starts
        os.environ["SGLANG_USE_CPU_ENGINE"] = "1"
    if factory is None:
        try:
            import sglang
        except ImportError:
            raise error(f"{what}: {SGLANG_MISSING}{'; ' + hint if hint else ''}") from None
        factory = sglang.Engine
    return factory(**kwargs)


def preflight(cfg: Any) -> None:
    """An sglang generator given as a local folder must be a `vsd export --layout sglang` export:
    said in one line before Ray starts, not by the engine actor after the cluster came up."""
    from vsd.model.sglang_layout import check_servable
    from vsd.preflight import PreflightError, is_location

    model = cfg.engine.model
    if cfg.engine.kind != "sglang" or not is_location(model) or model.startswith(("s3://", "file://")):
        return
    path = os.path.expanduser(model)
    if os.path.isdir(path):
        try:
            check_servable(path)
        except VSDError as exc:
            raise PreflightError(str(exc)) from None
