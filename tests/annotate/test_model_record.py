"""The model owns its input: a config that contradicts the exported model's record is refused at
load (one line), applied only with ``override: true`` (and a warning line), and a config silent on
a setting gets the record's value. Real exports of a real 64 px tiny LLaVA (`tiny_export_64_dir`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures.infra import REPO
from vsd.annotate.commands import load_config
from vsd.annotate.model_record import given_keys, read_record
from vsd.cli import build_parser, main
from vsd.config import ConfigError

TINY_CPU = str(REPO / "jobs/configs/annotate-tiny-cpu.yaml")  # asks 32 px and max_new_tokens 16


def _load(*argv: str):
    return load_config(build_parser().parse_args(["annotate", *argv]))


def test_the_export_records_what_the_model_was_trained_to_see(tiny_export_64_dir):
    info = json.loads(Path(tiny_export_64_dir, "vsd_export.json").read_text())
    assert info["input"] == {"image_size": 64, "visual_prompt": True}
    record = read_record(tiny_export_64_dir)
    assert (record.image_size, record.visual_prompt, record.budgets) == (64, True, {2: 28, 3: 63})


def test_a_config_asking_32_px_of_a_64_px_model_is_refused(tiny_export_64_dir, tmp_path, capsys):
    with pytest.raises(ConfigError) as err:
        _load("--config", TINY_CPU, "--model", tiny_export_64_dir)
    message = str(err.value)
    assert message.startswith("stages.preprocess.image_size: 32 px contradicts the model's record (64 px in ")
    assert "stages.preprocess.override=true" in message and "\n" not in message
    # through the CLI: one `vsd: error:` line, exit 2, before any cluster starts or image is read
    (tmp_path / "in").mkdir()
    Image.new("RGB", (48, 32), (90, 120, 30)).save(tmp_path / "in" / "a.png")
    argv = ["annotate", "--config", TINY_CPU, "--model", tiny_export_64_dir]
    code = main([*argv, "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [f"vsd: error: {message}"]
    assert not (tmp_path / "out").exists()


def test_override_applies_the_config_and_says_so(tiny_export_64_dir, capsys):
    cfg = _load(
        "--config",
        TINY_CPU,
        "--model",
        tiny_export_64_dir,
        "stages.preprocess.override=true",
        "engine.override=true",
    )
    assert cfg.stages.preprocess.image_size == 32 and cfg.engine.max_new_tokens == 16
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("vsd: warning: stages.preprocess.image_size: 32 px contradicts")
    assert warnings[0].endswith("applied because stages.preprocess.override is true")
    assert warnings[1].startswith("vsd: warning: engine.max_new_tokens: 16 contradicts the model's record")
    assert "task 2: 28, task 3: 63" in warnings[1]


def test_a_token_budget_against_the_trained_lengths_is_refused(tiny_export_64_dir, tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("engine:\n  max_new_tokens: 200\n")
    with pytest.raises(
        ConfigError, match=r"^engine\.max_new_tokens: 200 contradicts .* engine\.override=true"
    ):
        _load("--config", str(path), "--model", tiny_export_64_dir)


def test_what_the_config_does_not_say_comes_from_the_record(tiny_export_64_dir, capsys):
    cfg = _load("--model", tiny_export_64_dir)  # no config: preprocess would default to 336 px
    assert (cfg.stages.preprocess.image_size, cfg.stages.preprocess.visual_prompt) == (64, True)
    assert cfg.engine.max_new_tokens is None  # budgets come from the record at run time
    agreeing = _load("--model", tiny_export_64_dir, "stages.preprocess.image_size=64")
    assert agreeing.stages.preprocess.image_size == 64
    assert capsys.readouterr().err == ""  # agreeing or silent: nothing to warn about


def test_visual_prompt_off_against_the_record_is_refused(tiny_export_64_dir):
    with pytest.raises(
        ConfigError,
        match=r"^stages\.preprocess\.visual_prompt: no boxes drawn contradicts .*\(boxes drawn in ",
    ):
        _load("--model", tiny_export_64_dir, "stages.preprocess.visual_prompt=false")


def test_a_model_without_a_record_keeps_the_config(tiny_llava_dir):
    cfg = _load("--config", TINY_CPU, "--model", tiny_llava_dir)
    assert cfg.stages.preprocess.image_size == 32 and cfg.engine.max_new_tokens == 16
    assert read_record("tiny:llava") is None and read_record(tiny_llava_dir) is None


def test_given_keys_are_the_file_and_override_keys_with_their_sections(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stages:\n  preprocess:\n    image_size: 48\n")
    keys = given_keys(str(path), ["engine.max_new_tokens=9"])
    assert {"stages", "stages.preprocess", "stages.preprocess.image_size", "engine.max_new_tokens"} <= keys
    assert "stages.preprocess.visual_prompt" not in keys


def test_training_records_what_its_processor_fed_the_model(tiny_llava_dir):
    """What every checkpoint's meta.json carries as ``input`` (and `vsd export` copies)."""
    from vsd.model.loader import load_processor
    from vsd.train.worker import trained_input

    assert trained_input(load_processor(tiny_llava_dir)) == {"image_size": 32, "visual_prompt": True}


def test_a_checkpoints_own_record_serves_its_adapter(tiny_llava_dir, tiny_adapter_dir, tmp_path):
    """``engine.adapter`` from a training checkpoint: its meta.json is the record (no export)."""
    import shutil

    checkpoint = tmp_path / "checkpoint_00000002"
    shutil.copytree(tiny_adapter_dir, checkpoint / "adapter")
    meta = {"step": 2, "input": {"image_size": 32, "visual_prompt": True}, "answer_tokens": {}}
    (checkpoint / "meta.json").write_text(json.dumps(meta))
    record = read_record(tiny_llava_dir, str(checkpoint))
    assert (record.image_size, record.visual_prompt, record.budgets) == (32, True, {})
    assert record.where == str(checkpoint / "meta.json")
    with pytest.raises(
        ConfigError, match=r"^stages\.preprocess\.image_size: 48 px contradicts .*meta\.json\)"
    ):
        _load("--model", tiny_llava_dir, "--adapter", str(checkpoint), "stages.preprocess.image_size=48")
