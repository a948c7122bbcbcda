"""``engine.*``: the settings every engine shares, plus one nested section per registered kind.

The common fields (model, dtype, device, budgets) are written once here; each backend adds its own
``engine.<kind>.*`` section through its options dataclass (``HFOptions``, ``SGLangOptions``), which
validates itself and states the cross-field rules that concern it (``check``), once. The class
``EngineConfig`` is assembled from the backend registry (``vsd/backends/__init__.py``) by
``engine_config_class``, so a new engine brings its section without an edit here.

Nothing in this module imports an engine's runtime (torch, sglang): a CPU node validates a GPU
job's config before any Ray cluster starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from vsd.backends import Backend, load_object
from vsd.config import DEVICE, ConfigError, check, check_fields, describe

DTYPES = ["auto", "float32", "bfloat16", "float16"]


@dataclasses.dataclass
class EngineOptions:
    """Base of a backend's own section, ``engine.<kind>.*``."""

    # Engine steps of ``batch_size`` images per call of the generate stage. An engine that runs a
    # call as steps of its own (hf) takes several per call, so Ray's per-call cost (a task, its
    # block in and out) is paid once per that many steps; one that batches a call itself (SGLang's
    # scheduler) gets ``batch_size`` images, what the bare-engine benchmarks send it too.
    call_steps: ClassVar[int] = 1

    def check(self, cfg: Any) -> None:
        """Rules between this section and the common fields, when ``cfg.kind`` is this backend;
        raise ``ConfigError("<field>: ...")``."""


@dataclasses.dataclass
class EngineSettings:
    """The fields every engine reads; ``EngineConfig`` adds one section per registered kind."""

    kind: str = describe("kind", "hf", help="which engine answers (see the sections below)")
    model: str = describe(
        "model", "tiny:llava", help="checkpoint: local dir, s3:// prefix, hub id or tiny:llava"
    )
    adapter: str | None = describe(
        "adapter",
        None,
        help="PEFT LoRA adapter applied on top (hf only; sglang needs a merged export from `vsd export`)",
    )
    dtype: str = describe(
        "dtype", "auto", choices=DTYPES, help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16"
    )
    device: str = describe(
        "device", "auto", pattern=DEVICE, help="auto (cuda if available), cpu, cuda, cuda:N"
    )
    max_new_tokens: int | None = describe(
        "max_new_tokens",
        None,
        ge=1,
        help="token budget of every free-text answer "
        "(tasks 2/3); null = per task from the answer lengths the model was "
        "trained on (p99 + margin, see vsd/annotate/budgets.py), else 64 / 160",
    )
    override: bool = describe(
        "override",
        False,
        help="apply max_new_tokens even where it contradicts the answer lengths the model "
        "records (a warning line says so); false: such a config is refused",
    )
    temperature: float = describe("temperature", 0.0, ge=0, help="0 = greedy (reproducible); >0 samples")
    batch_size: int = describe(
        "batch_size",
        8,
        ge=1,
        help="images per engine step; all their prompts decode "
        "together, so larger = better GPU use and more memory",
    )

    KINDS: ClassVar[tuple[str, ...]] = ()  # filled by engine_config_class

    def validate(self) -> None:
        check_fields(self)  # also for a config built in code (from_dict checked them already)
        if self.kind not in self.KINDS:
            raise ConfigError(f"kind: must be one of {list(self.KINDS)}, got {self.kind!r}")
        section = getattr(self, self.kind)
        try:
            check(section)  # a section built in Python (not from YAML) is not checked yet
        except ConfigError as exc:
            raise ConfigError(f"{self.kind}.{exc}") from None
        section.check(self)

    @property
    def images_per_call(self) -> int:
        """The generate stage's default batch: ``batch_size`` × this kind's ``call_steps``."""
        return self.batch_size * type(self.options).call_steps

    @property
    def options(self) -> Any:
        """This kind's own section (``cfg.hf`` for kind hf)."""
        return getattr(self, self.kind)


def engine_config_class(registry: Mapping[str, Backend]) -> type:
    """``EngineConfig``: the common fields, ``kind`` limited to the registry, and one nested
    section per kind (``engine.hf.*``, ``engine.sglang.*``) from its options class."""
    kinds = tuple(registry)
    kind_help = "; ".join(f"{k}: {b.help}" for k, b in registry.items())
    fields: list[tuple[str, Any, Any]] = [
        ("kind", str, describe("kind", kinds[0], choices=list(kinds), help=kind_help))
    ]
    for kind, backend in registry.items():
        options = load_object(backend.options)
        if not (isinstance(options, type) and issubclass(options, EngineOptions)):
            raise TypeError(f"engine registry: {backend.options} is not an EngineOptions dataclass")
        fields.append((kind, options, describe(kind, factory=options, help=f"read only when kind is {kind}")))
    cls = dataclasses.make_dataclass(
        "EngineConfig",
        fields,
        bases=(EngineSettings,),
        namespace={
            "KINDS": kinds,
            "__doc__": "Which engine answers the prompts, and how (``engine.*``).",
        },
    )
    cls.__module__ = "vsd.annotate.engines"  # pickled by reference (Ray ships configs to actors)
    return cls
