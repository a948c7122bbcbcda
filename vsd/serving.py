"""Starting a model, shared by the annotation engines and the refiners.

Both the generate stage (``vsd.annotate.engines``) and the refine stage (``vsd.refine``) load a
model inside a Ray actor: from a ``tiny:`` name, a local directory, an ``s3://`` prefix or a hub
id, on a device, with the CPUs Ray gave the actor, sometimes through ``sglang.Engine``. Those
steps live here once, so both stages resolve a model URI, pick a device and start SGLang the same
way. Heavy packages (torch, sglang) are imported only inside the functions that need them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from vsd.errors import VSDError

SGLANG_MISSING = "sglang is not installed (GPU nodes: pip install 'llava-vsd[gpu]')"


def localize_model(uri: str, what: str = "model") -> str:
    """A local directory for ``tiny:`` names, local paths, ``file://`` and ``s3://`` prefixes
    (downloaded once into the cache); a hub id is returned unchanged. Errors name ``what``."""
    from vsd.model.loader import localize

    try:
        return localize(uri)
    except VSDError as exc:
        msg = str(exc)
        raise VSDError(f"{what}: {msg.split(': ', 1)[1]}" if msg.startswith("model: ") else f"{what}: {msg}") from None


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` where torch sees a GPU, else ``cpu``; anything else as given."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def actor_cpus() -> int:
    """The CPUs this process may use: Ray's assignment inside an actor, else the affinity mask."""
    try:
        import ray

        if ray.is_initialized():
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
            if cpus:
                return max(1, int(cpus))
    except Exception:  # noqa: BLE001 - not in Ray (or an old Ray): fall back to the OS view
        pass
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def start_sglang(what: str, kwargs: dict[str, Any], *, cpu_workers: int | None = None,
                 factory: Callable[..., Any] | None = None, hint: str = "",
                 error: type[VSDError] = VSDError) -> Any:
    """``sglang.Engine(**kwargs)`` (or ``factory(**kwargs)``, a test's stand-in), after setting
    ``SGLANG_CPU_WORKERS`` to ``cpu_workers`` or the actor's CPUs so SGLang's CPU-side pools do not
    oversubscribe the node. A missing sglang is one ``error`` line naming ``what`` (and ``hint``)."""
    os.environ["SGLANG_CPU_WORKERS"] = str(cpu_workers or actor_cpus())
    if factory is None:
        try:
            import sglang
        except ImportError:
            raise error(f"{what}: {SGLANG_MISSING}{'; ' + hint if hint else ''}") from None
        factory = sglang.Engine
    return factory(**kwargs)
