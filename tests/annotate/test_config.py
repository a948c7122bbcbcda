"""AnnotateConfig: per-stage sections generated from the stage list; the old flat keys still load."""

from __future__ import annotations

import dataclasses
import glob
import os
from pathlib import Path

import pytest

from vsd.annotate.config import AnnotateConfig, load_config
from vsd.annotate.stages import STAGES, Resources, RunContext, build_dataset, stages_config
from vsd.config import ConfigError, describe, from_dict, help_text

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(glob.glob(str(REPO / "jobs/configs/annotate-*.yaml"))) + [
    str(REPO / "vsd/assets/demo/annotate.yaml")
]

NEW_LAYOUT = """
input: {uri: /data/in, format: folder, extensions: [jpg]}
stages:
  read: {max_file_bytes: 1000, resources: {batch_size: 7, num_cpus: 0.5}}
  preprocess: {image_size: 64, resources: {batch_size: 5}}
  generate: {resources: {concurrency: 3, num_gpus: 0.5}}
  verify: {resources: {batch_size: 5, num_cpus: 0.5}}
  refine: {mode: "off", resources: {num_cpus: 0.75}}
  write: {resources: {batch_size: 9, num_cpus: 0.5}}
"""


def test_a_flat_layout_that_no_release_ever_read_is_refused_in_one_line(tmp_path):
    """0.1.0 never had a release: the flat keys of a development layout are unknown fields."""
    new = tmp_path / "new.yaml"
    new.write_text(NEW_LAYOUT)
    assert load_config(str(new)).stages.write.resources.batch_size == 9
    with pytest.raises(ConfigError, match=r"^preprocess: unknown field \(known: "):
        load_config(None, ["preprocess.image_size=64"])
    with pytest.raises(ConfigError, match=r"^input: expected a mapping, got str$"):
        load_config(None, ["input=/data/in"])


@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_shipped_configs_use_the_new_layout(path, capsys):
    cfg = load_config(path, ["input.uri=/in", "output=/out"])
    cfg.check_paths()
    assert capsys.readouterr().err == "", "a shipped config still uses a deprecated key"
    assert Path(path).read_text().lstrip().startswith("#"), "a config opens with the command that runs it"


def test_each_stage_has_a_section_in_pipeline_order_and_resources():
    names = [f.name for f in dataclasses.fields(AnnotateConfig().stages)]
    assert (
        names
        == [s.NAME for s in STAGES]
        == ["read", "propose", "preprocess", "generate", "verify", "refine", "write"]
    )
    for s in STAGES:
        assert isinstance(getattr(AnnotateConfig().stages, s.NAME).resources, Resources)


@pytest.mark.parametrize(
    "override, message",
    [
        ("stages.write.resources.batch_size=0", "stages.write.resources.batch_size: must be >= 1"),
        ("stages.generate.resources.num_gpus=-1", "stages.generate.resources.num_gpus: must be >= 0"),
        ("stages.preprocess.image_size=2", "stages.preprocess.image_size: must be in 8..4096"),
        ("stages.bogus.x=1", "stages.bogus: unknown field"),
        ("input.format=zip", "input.format: must be one of"),
    ],
)
def test_bad_stage_settings_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def _tag(batch, *, flag):
    return batch


class _Tag:
    """A stage written the way a new one would be: one module's worth of names."""

    NAME = "tag"
    HELP = "adds a flag to every ok pair (test stage)"

    @dataclasses.dataclass
    class Config:
        flag: str = describe("flag", "seen", help="the flag to add")
        resources: Resources = describe("resources", factory=Resources, help="CPU tasks")

    @staticmethod
    def enabled(cfg) -> bool:
        return True

    @staticmethod
    def add(ds, cfg, ctx):
        return ds.map_batches(_tag, fn_kwargs={"flag": cfg.stages.tag.flag})


class _RecordingDataset:
    """Records the operators the stages add (their UDFs, in order) instead of building a Ray graph."""

    def __init__(self):
        self.ops: list[str] = []

    def map_batches(self, fn, **kwargs):
        self.ops.append(getattr(fn, "__name__", type(fn).__name__))
        return self


def test_adding_a_stage_is_one_module_plus_one_line():
    """A new stage in the list gets its config section (YAML, overrides, --help-config) and its
    place in the graph with no other edit."""
    stages = (*STAGES[:4], _Tag, *STAGES[4:])  # after generate
    cls = stages_config(stages)
    section = from_dict(cls, {"tag": {"flag": "x"}})
    assert section.tag.flag == "x" and [f.name for f in dataclasses.fields(cls)][4] == "tag"
    assert "tag.flag (str, default 'seen'): the flag to add" in help_text(cls)

    cfg = AnnotateConfig()
    cfg.stages = section
    built = build_dataset(_RecordingDataset(), cfg, RunContext(meta=None), stages)
    assert built.ops == [
        "read_rows",
        "preprocess_batch",
        "GenerateStageUDF",
        "_tag",
        "verify_batch",
        "refine_batch",
        "write_parts",
    ]
    assert build_dataset(_RecordingDataset(), AnnotateConfig(), RunContext(meta=None)).ops == [
        op for op in built.ops if op != "_tag"
    ]
