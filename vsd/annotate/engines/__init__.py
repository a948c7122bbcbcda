"""Annotation engines, found by kind.

``ENGINES`` maps a kind to where its engine class and its options class live, as import strings:
a CPU node validates an sglang job's config (``EngineConfig`` below) without importing sglang or
torch, and an engine's runtime is imported only when ``make_engine`` builds it. Adding an engine
is one module (its ``Engine`` class and its ``EngineOptions`` dataclass, the ``engine.<kind>.*``
section) plus one line here.

    from vsd.annotate.engines import EngineConfig, make_engine
    engine = make_engine(EngineConfig(kind="hf", model="tiny:llava", device="cpu"))
"""

from __future__ import annotations

from typing import Any

from vsd.annotate.engines.base import Engine
from vsd.annotate.engines.config import Backend, engine_config_class, load_object
from vsd.config import ConfigError

ENGINES: dict[str, Backend] = {
    "hf": Backend(
        "vsd.annotate.engines.hf.engine:HFEngine",
        "vsd.annotate.engines.hf.options:HFOptions",
        "transformers LLaVA in-process, CPU or GPU, LoRA adapters served as they are",
    ),
    "sglang": Backend(
        "vsd.annotate.engines.sglang:SGLangEngine",
        "vsd.annotate.engines.sglang:SGLangOptions",
        "sglang.Engine (GPU nodes, AMX CPUs in tests) serving a merged `vsd export --layout sglang`",
    ),
}

EngineConfig = engine_config_class(ENGINES)


def engine_class(kind: str) -> type:
    """The engine class registered for ``kind`` (imported now)."""
    if kind not in ENGINES:
        raise ConfigError(f"kind: must be one of {list(ENGINES)}, got {kind!r}")
    return load_object(ENGINES[kind].engine)


def make_engine(cfg: Any, **kwargs: Any) -> Engine:
    """The engine for ``cfg`` (an ``EngineConfig``); ``kwargs`` go to its constructor
    (``model=``/``processor=`` for hf, ``engine_factory=`` for sglang)."""
    return engine_class(cfg.kind)(cfg, **kwargs)


__all__ = ["ENGINES", "EngineConfig", "engine_class", "make_engine"]
