"""``AnnotateConfig``: everything `vsd annotate` / ``jobs/annotate.py`` needs, typed and described.

It composes the input, the engine (``engine.*``, with one section per backend) and one section
per stage (``stages.<name>.*``: the stage's settings and its ``resources``), each defined next to
its code. Credentials are never config fields (they come from the environment), so a dumped
config is safe to publish.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from vsd.annotate.engines import EngineConfig
from vsd.annotate.stages import StagesConfig
from vsd.config import ConfigError, describe
from vsd.corpus.shards import DEFAULT_SHARD_ROWS
from vsd.corpus.sources import FORMATS


@dataclass
class InputConfig:
    uri: str = describe(
        "uri",
        "",
        help="what to annotate (--input): a corpus made by `vsd corpus sync`, a folder "
        "or s3:// prefix of images, a Parquet/JSONL/CSV manifest, or VSD JSON",
    )
    format: str = describe(
        "format",
        "auto",
        choices=[*FORMATS, "corpus"],
        help="auto: a folder with _corpus.json = corpus, *.parquet/*.jsonl/*.csv = manifest, "
        "*.json = VSD JSON, else a folder/prefix of images",
    )
    image_dir: str = describe(
        "image_dir",
        "",
        help="folder of the images: required for VSD JSON; base of relative manifest URIs "
        "(default: the manifest's folder)",
    )
    vsd2: str = describe("vsd2", "", help="VSD JSON only: the matching VSDv2 file (optional)")
    extensions: list[str] = describe(
        "extensions",
        factory=list,
        help="folder only: file extensions to take (e.g. [jpg, png]); empty = every "
        "non-hidden file, so a broken or mis-named file still gets its error row",
    )
    follow_dir_links: bool = describe(
        "follow_dir_links",
        False,
        help="folder only: enter links to directories that point inside the input folder (each "
        "directory once, loops cut); off: such links are reported and not entered. Links out of the "
        "folder are never entered, links to files are always read (under the root check)",
    )
    allowed_roots: list[str] = describe(
        "allowed_roots",
        factory=list,
        help="folders/prefixes input rows may read besides the input's own (a manifest's "
        "folder or image_dir, the folder itself); a row elsewhere is an "
        "outside_root error row and is never read",
    )
    shard_rows: int = describe(
        "shard_rows",
        DEFAULT_SHARD_ROWS,
        ge=1,
        help="rows per input shard made from a folder/manifest/VSD input (the unit of "
        "incrementality: a night re-reads only unfinished shards)",
    )
    prune: str = describe(
        "prune",
        "auto",
        choices=["auto", "on", "off"],
        help="a file deleted from the source leaves the output's current rows at the next run "
        "(earlier nights keep it for as_of reads). auto: for a folder or prefix (its listing is the "
        "whole source), not for a manifest or VSD JSON (often a night's new rows only); on: also "
        "for those (the manifest lists everything); off: append-only",
    )


@dataclass
class MaintainConfig:
    every_days: int = describe(
        "every_days",
        7,
        ge=0,
        help="a run's finish also compacts the table's small files and checkpoints its log when the "
        "last maintenance (or the table's creation) is this many days old; 0: only `vsd maintain`",
    )
    vacuum_keep_days: int = describe(
        "vacuum_keep_days",
        0,
        ge=0,
        help="with that maintenance, also delete from storage the files no version of this many days "
        "needs (as_of then reaches back that far; a takedown's rows leave storage); 0: never vacuum "
        "automatically (`vsd maintain --keep-days` does it on demand)",
    )


@dataclass
class AnnotateConfig:
    input: InputConfig = describe("input", factory=InputConfig, help="what to annotate and how to read it")
    output: str = describe(
        "output", "", help="output root (local or s3://); data lands in <output>/run_date=YYYY-MM-DD/"
    )
    engine: EngineConfig = describe(
        "engine", factory=EngineConfig, help="the model that answers and its backend"
    )
    tasks: list[int] = describe(
        "tasks",
        factory=lambda: [1, 2, 3],
        help="which of the 3 tasks to ask per pair (1 relation, 2 sentence, 3 three sentences); "
        "fewer = faster; scene-level images always get the open-ended one",
    )
    stages: StagesConfig = describe(
        "stages", factory=StagesConfig, help="one section per pipeline stage: its settings and its resources"
    )
    maintain: MaintainConfig = describe(
        "maintain", factory=MaintainConfig, help="keeping a years-old table cheap to read (`vsd maintain`)"
    )
    run_date: str = describe("run_date", "", help="partition date YYYY-MM-DD (default: today, UTC)")
    run_id: str = describe(
        "run_id", "", help="id recorded on every row (default: <run_date>T<time>-<random>)"
    )
    progress_bars: bool = describe(
        "progress_bars",
        False,
        help="Ray Data's operator progress bars, execution plans and warnings on the driver's console "
        "(--verbose); off: only the run's own progress line and counts (`vsd.annotate.console`)",
    )

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
        if not self.input.uri:
            raise ConfigError("input.uri: required (--input URI)")
        if not self.output:
            raise ConfigError("output: required (--output URI)")
        from vsd.annotate.paths import check_apart, make_absolute

        make_absolute(self)
        check_apart(self.input.uri, self.output)

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
