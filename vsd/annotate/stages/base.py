"""What every stage shares: its ``resources`` block and the one way a stage joins the Ray Data graph.

A stage module (``stages/<name>.py``) defines ``NAME``, ``HELP``, a ``Config`` dataclass (its own
settings plus ``resources``), ``enabled(cfg)`` and ``add(ds, cfg, ctx)``; the pipeline is the
list in ``stages/__init__.py``. ``add`` goes through `map_stage`, so every stage runs with the
same conventions: Arrow batches in ``ITEM_SCHEMA``, fractional CPUs for light tasks (on a 2-core
machine whole CPUs per stage would serialise the pipeline), actors only where something must stay
loaded (a model), and Ray Data's own retries (a re-run batch rewrites the same part name).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vsd.config import describe

if TYPE_CHECKING:
    from vsd.annotate.config import AnnotateConfig
    from vsd.annotate.run_meta import RunMeta


@dataclass
class Resources:
    """How much of the cluster one stage takes, and how it batches."""

    num_cpus: float = describe(
        "num_cpus",
        0.25,
        ge=0,
        help="CPUs per task or actor of this stage (fractions let light stages overlap on few cores)",
    )
    num_gpus: float = describe("num_gpus", 0.0, ge=0, help="GPUs per actor (model stages only; 0 = CPU)")
    concurrency: int | None = describe(
        "concurrency",
        None,
        ge=1,
        help="model stages: actors in the pool (one model "
        "copy each); other stages: at most this many tasks at once (null = Ray decides)",
    )
    batch_size: int | None = describe(
        "batch_size",
        None,
        ge=1,
        help="images per call of this stage (null = the stage's default, see its help)",
    )


def resources(help: str, **defaults: Any) -> Any:
    """A stage config's ``resources`` field with that stage's defaults."""
    return describe("resources", factory=lambda: Resources(**defaults), help=help)


@dataclass
class RunContext:
    """What stages need from the run besides the config: where and as what to write, the claim
    desk for exactly-once reads, and (tests, benchmarks) an engine factory."""

    meta: RunMeta
    ledger: Any = None
    ids: Any = None  # vsd.keyset.Snapshot of the output's written images (looked up in read tasks)
    released: frozenset[bytes] = frozenset()  # keys in ids that no longer count (output.released)
    roots: list[str] = field(default_factory=list)  # where input URIs may point
    engine_factory: Callable | None = None

    @property
    def run_id(self) -> str:
        """The run's id, for bookkeeping kept per run on the nodes ('' for a stage built without
        run metadata, as tests do)."""
        return self.meta.run_id if self.meta else ""


def map_stage(
    ds,
    fn: Callable | type,
    res: Resources,
    *,
    default_batch: int,
    kwargs: dict | None = None,
    actor: bool = False,
    keeps_rows: bool = True,
):
    """``ds.map_batches`` with the stage conventions; ``actor`` = a callable class built once per
    actor (``kwargs`` go to its constructor), else a function (``kwargs`` to each call).
    ``keeps_rows``: one item out per item in (lets Ray Data fuse and size blocks better)."""
    import ray.data

    options: dict[str, Any] = dict(
        batch_size=res.batch_size or default_batch,
        batch_format="pyarrow",
        num_cpus=res.num_cpus,
        udf_modifying_row_count=not keeps_rows,
    )
    if res.num_gpus:
        options["num_gpus"] = res.num_gpus
    if actor:
        return ds.map_batches(
            fn,
            fn_constructor_kwargs=kwargs or {},
            compute=ray.data.ActorPoolStrategy(size=res.concurrency or 1),
            **options,
        )
    if res.concurrency:
        options["compute"] = ray.data.TaskPoolStrategy(size=res.concurrency)
    return ds.map_batches(fn, fn_kwargs=kwargs or {}, **options)


def close_quietly(obj: Any, attr: str) -> None:
    """Close ``obj.<attr>`` (an engine, a refiner) when an actor goes away; it is shutting down
    anyway, so a failure to close is not worth an exception in ``__del__``."""
    close = getattr(getattr(obj, attr, None), "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001
            pass


def enabled_always(cfg: AnnotateConfig) -> bool:
    return True
