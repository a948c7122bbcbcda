"""``AnnotateConfig``: everything `vsd annotate` / ``jobs/annotate.py`` needs, typed and described.

Stage configs live next to their stage (``EngineConfig`` in ``engines/base.py``, ``RefineConfig``
in ``vsd/refine/config.py``, ``PreprocessConfig`` in ``preprocess.py``); this module composes them
with the source, the output layout and the Ray resources of each stage. Credentials are never
config fields (they come from the environment), so a dumped config is safe to publish.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from vsd.annotate.engines.base import EngineConfig
from vsd.annotate.preprocess import PreprocessConfig
from vsd.annotate.source import FORMATS
from vsd.config import ConfigError, describe
from vsd.refine.config import RefineConfig

SECRET_WORDS = ("secret", "token", "password", "passwd", "credential", "api_key", "access_key", "private_key")


@dataclass
class SourceConfig:
    format: str = describe("format", "auto", choices=list(FORMATS),
                           help="auto: *.parquet/*.jsonl = manifest, *.json = VSD JSON, else a folder/prefix of images")
    image_dir: str = describe("image_dir", "",
                              help="folder of the images: required for VSD JSON; base of relative manifest URIs "
                                   "(default: the manifest's folder)")
    vsd2: str = describe("vsd2", "", help="VSD JSON only: the matching VSDv2 file (optional)")
    extensions: list[str] = describe("extensions", factory=list,
                                     help="folder only: file extensions to take (e.g. [jpg, png]); empty = every "
                                          "non-hidden file, so a broken or mis-named file still gets its error row")


@dataclass
class ResourcesConfig:
    read_batch_size: int = describe("read_batch_size", 32, help="images per read task call (claim + read + hash)")
    preprocess_batch_size: int = describe("preprocess_batch_size", 16, help="images per preprocess task call")
    cpu_task_num_cpus: float = describe("cpu_task_num_cpus", 0.25,
                                        help="CPUs per read/verify/write task (I/O bound: a fraction suffices)")
    preprocess_num_cpus: float = describe("preprocess_num_cpus", 0.5, help="CPUs per preprocess task (decode/resize)")
    generate_concurrency: int = describe("generate_concurrency", 1,
                                         help="engine actors (one model copy each); 8 on an 8-GPU worker group")
    generate_num_cpus: float = describe("generate_num_cpus", 1.0,
                                        help="CPUs per engine actor (hf on CPU: its torch threads; sglang: SGLANG_CPU_WORKERS)")
    generate_num_gpus: float = describe("generate_num_gpus", 0.0, help="GPUs per engine actor (0 = CPU engine)")
    refine_concurrency: int = describe("refine_concurrency", 1, help="refiner actors (hf/sglang modes)")
    refine_num_cpus: float = describe("refine_num_cpus", 0.5, help="CPUs per refiner actor (hf/sglang); rules/off run as light CPU tasks instead")
    refine_num_gpus: float = describe("refine_num_gpus", 0.0, help="GPUs per refiner actor (hf/sglang refine on GPU)")
    refine_batch_size: int = describe("refine_batch_size", 16, help="images per refine call")
    write_batch_size: int = describe("write_batch_size", 256,
                                     help="images per Parquet part: larger = fewer, bigger files; a crash loses "
                                          "at most the parts in flight")

    def validate(self) -> None:
        for name in ("read_batch_size", "preprocess_batch_size", "generate_concurrency", "refine_concurrency",
                     "refine_batch_size", "write_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("cpu_task_num_cpus", "preprocess_num_cpus", "generate_num_cpus", "refine_num_cpus",
                     "generate_num_gpus", "refine_num_gpus"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")


@dataclass
class AnnotateConfig:
    input: str = describe("input", "", help="corpus: folder or s3:// prefix of images, Parquet/JSONL manifest, or VSD JSON")
    output: str = describe("output", "", help="output root (local or s3://); data lands in <output>/run_date=YYYY-MM-DD/")
    source: SourceConfig = describe("source", factory=SourceConfig, help="how to read the input")
    engine: EngineConfig = describe("engine", factory=EngineConfig, help="the model that answers (hf | sglang)")
    refine: RefineConfig = describe("refine", factory=RefineConfig, help="rewriting descriptions (rules | hf | sglang | off)")
    preprocess: PreprocessConfig = describe("preprocess", factory=PreprocessConfig, help="decode, guard, visual prompt, resize")
    resources: ResourcesConfig = describe("resources", factory=ResourcesConfig, help="batch sizes and Ray resources per stage")
    tasks: list[int] = describe("tasks", factory=lambda: [1, 2, 3],
                                help="which of the 3 tasks to ask per pair (1 relation, 2 sentence, 3 three sentences); "
                                     "fewer = faster; scene-level images always get the open-ended one")
    run_date: str = describe("run_date", "", help="partition date YYYY-MM-DD (default: today, UTC)")
    run_id: str = describe("run_id", "", help="id recorded on every row (default: <run_date>T<time>-<random>)")
    progress_bars: bool = describe("progress_bars", True, help="Ray Data progress bars on the driver's terminal")

    def validate(self) -> None:
        if not self.tasks or any(t not in (1, 2, 3) for t in self.tasks):
            raise ConfigError(f"tasks: a non-empty subset of [1, 2, 3], got {self.tasks}")
        if self.run_date and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", self.run_date):
            raise ConfigError(f"run_date: must look like YYYY-MM-DD, got {self.run_date!r}")
        if self.run_date:
            try:
                dt.date.fromisoformat(self.run_date)
            except ValueError:
                raise ConfigError(f"run_date: not a calendar date: {self.run_date!r}") from None

    def check_paths(self) -> None:
        """Input/output are given per run (CLI), so they are checked when the run starts."""
        if not self.input:
            raise ConfigError("input: required (--input URI)")
        if not self.output:
            raise ConfigError("output: required (--output URI)")
        inp, out = self.input.rstrip("/"), self.output.rstrip("/")
        if out == inp or out.startswith(inp + "/"):
            raise ConfigError(f"output: {self.output} is inside the input {self.input}; the next run would annotate its own files")

    def resolved_run_date(self) -> str:
        return self.run_date or dt.datetime.now(dt.timezone.utc).date().isoformat()


def load_config(path: str | None, overrides: list[str] | None = None) -> AnnotateConfig:
    """`vsd.config.load` for this job; ``run_date=2026-11-26`` stays a string (YAML would read a
    date, which a ``str`` field refuses), so the obvious override just works."""
    from vsd import config as cfglib

    fixed = []
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if key.strip() == "run_date" and sep and value and value[0] not in "'\"":
            item = f"{key}='{value}'"
        fixed.append(item)
    return cfglib.load(AnnotateConfig, path, fixed)


def scrub(data):
    """A config dict without anything that looks like a credential (defence in depth: engine_args
    pass through to sglang and could carry one)."""
    if isinstance(data, dict):
        return {k: ("<redacted>" if any(w in str(k).lower() for w in SECRET_WORDS) else scrub(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [scrub(v) for v in data]
    return data
