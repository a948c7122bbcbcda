"""Every model a run serves, by backend: one registry for the generate and refine stages.

A backend is named once here (``BACKENDS``) and declares, as import strings so that nothing heavy
is imported to validate a config on a CPU node:

* ``options``: its ``engine.<name>.*`` section, an ``EngineOptions`` dataclass (validated with the
  rest of the config, before Ray starts);
* ``engine``: its image entry point, an ``Engine`` class built with the ``engine.*`` config
  (``engine.kind: <name>``, the generate stage);
* ``refiner``: its text entry point, a ``Refiner`` class built with the ``stages.refine.*`` config
  (``refine.mode: <name>``: the refine stage reuses the same model settings -- model, dtype,
  device, engine_args);
* ``process_titles``: what the processes it starts are called (the engine watch,
  ``vsd/annotate/engine_watch.py``, treats their death as the engine's);
* ``preflight``: a ``check(cfg)`` run by ``vsd.preflight`` on the annotate config, before Ray;
* ``layout``/``cpu_overrides``: the export layout it serves and the overrides that run it on a
  CPU (``vsd demo --engine``).

Adding a backend (say vLLM) is one module holding those objects plus one line in ``BACKENDS``.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from vsd.config import ConfigError


@dataclasses.dataclass(frozen=True)
class Backend:
    """One registry entry; every ``"module:Name"`` is imported only when it is used."""

    help: str
    options: str  # "module:Class", an EngineOptions dataclass (light to import)
    engine: str | None = None  # "module:Class", Engine(cfg: EngineConfig, **kwargs)
    refiner: str | None = None  # "module:Class", Refiner(cfg: RefineConfig)
    process_titles: tuple[str, ...] = ()
    preflight: str | None = None  # "module:function", check(cfg: AnnotateConfig) -> None
    layout: str = "hf"  # the `vsd export --layout` it serves
    cpu_overrides: tuple[str, ...] = ()  # annotate overrides that run it on a CPU (the demo)


BACKENDS: dict[str, Backend] = {
    "hf": Backend(
        "transformers LLaVA in-process, CPU or GPU, LoRA adapters served as they are",
        options="vsd.annotate.engines.hf.options:HFOptions",
        engine="vsd.annotate.engines.hf.engine:HFEngine",
        refiner="vsd.refine.llm:HFRefiner",
    ),
    "sglang": Backend(
        "sglang.Engine (GPU nodes, AMX CPUs in tests) serving a merged `vsd export --layout sglang`",
        options="vsd.annotate.engines.sglang:SGLangOptions",
        engine="vsd.annotate.engines.sglang:SGLangEngine",
        refiner="vsd.refine.sglang:SGLangRefiner",
        process_titles=("sglang::",),  # sglang::scheduler..., sglang::detokenizer
        preflight="vsd.backends.sglang:preflight",
        layout="sglang",
        cpu_overrides=("engine.device=cpu", "engine.dtype=bfloat16"),
    ),
}


def load_object(path: str) -> Any:
    """``"package.module:Name"`` -> the object, imported now (the registry stores strings)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def engines() -> dict[str, Backend]:
    """The backends with an image entry point (``engine.kind`` choices), in registry order."""
    return {name: b for name, b in BACKENDS.items() if b.engine}


def refiners() -> list[str]:
    """The backends with a text entry point (``refine.mode`` choices besides rules and off)."""
    return [name for name, b in BACKENDS.items() if b.refiner]


def process_titles() -> tuple[str, ...]:
    """The titles of every process a registered backend starts."""
    return tuple(t for b in BACKENDS.values() for t in b.process_titles)


def entry_point(name: str, which: str, field: str) -> Any:
    """Backend ``name``'s ``engine`` or ``refiner`` class, imported now; an unknown name is one
    line naming ``field``."""
    choices = [n for n, b in BACKENDS.items() if getattr(b, which)]
    if name not in choices:
        raise ConfigError(f"{field}: must be one of {choices}, got {name!r}")
    return load_object(getattr(BACKENDS[name], which))


def preflight(cfg: Any) -> None:
    """The checks of each backend the annotate run ``cfg`` uses (generator, then refiner)."""
    used = dict.fromkeys([cfg.engine.kind, cfg.stages.refine.mode])
    for name in used:
        backend = BACKENDS.get(name)
        if backend is not None and backend.preflight:
            load_object(backend.preflight)(cfg)


__all__ = ["BACKENDS", "Backend", "engines", "entry_point", "load_object", "preflight", "process_titles"]
