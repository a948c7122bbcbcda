"""Annotation engines, found by kind.

``ENGINES`` maps a kind to where its engine class and its options class live, as import strings
(the backends of ``vsd/backends/__init__.py`` that have an image entry point): a CPU node
validates an sglang job's config (``EngineConfig`` below) without importing sglang or torch, and
an engine's runtime is imported only when ``make_engine`` builds it. Adding an engine is one
module (its ``Engine`` class and its ``EngineOptions`` dataclass, the ``engine.<kind>.*`` section)
plus one line in that registry.

    from vsd.annotate.engines import EngineConfig, make_engine
    engine = make_engine(EngineConfig(kind="hf", model="tiny:llava", device="cpu"))
"""

from __future__ import annotations

from typing import Any

from vsd.annotate.engines.base import Engine
from vsd.annotate.engines.config import engine_config_class
from vsd.backends import Backend, engines, entry_point

ENGINES: dict[str, Backend] = engines()  # the backends with an image entry point

EngineConfig = engine_config_class(ENGINES)


def engine_class(kind: str) -> type:
    """The engine class registered for ``kind`` (imported now)."""
    return entry_point(kind, "engine", "kind")


def make_engine(cfg: Any, **kwargs: Any) -> Engine:
    """The engine for ``cfg`` (an ``EngineConfig``); ``kwargs`` go to its constructor
    (``model=``/``processor=`` for hf, ``engine_factory=`` for sglang)."""
    return engine_class(cfg.kind)(cfg, **kwargs)


__all__ = ["ENGINES", "EngineConfig", "engine_class", "make_engine"]
