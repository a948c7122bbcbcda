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

OLD_LAYOUT = """
input: /data/in
source: {format: folder, extensions: [jpg]}
preprocess: {image_size: 64, max_file_bytes: 1000}
refine: {mode: "off"}
resources:
  read_batch_size: 7
  preprocess_batch_size: 5
  cpu_task_num_cpus: 0.5
  generate_concurrency: 3
  generate_num_gpus: 0.5
  refine_num_cpus: 0.75
  write_batch_size: 9
"""

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


def test_the_previous_flat_layout_loads_as_the_new_one_with_deprecation_lines(tmp_path, capsys):
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(OLD_LAYOUT)
    new.write_text(NEW_LAYOUT)
    assert load_config(str(new)) == load_config(str(old))
    err = capsys.readouterr().err
    assert "vsd: deprecated: resources.write_batch_size is now stages.write.resources.batch_size" in err
    assert "vsd: deprecated: input: URI is now input.uri" in err
    assert all(line.startswith("vsd: deprecated: ") for line in err.splitlines())


def test_an_old_override_still_works_and_the_new_spelling_wins():
    cfg = load_config(None, ["resources.generate_num_gpus=1", "stages.refine.mode=off", "refine.mode=hf"])
    assert cfg.stages.generate.resources.num_gpus == 1.0
    assert cfg.stages.refine.mode == "off"


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
