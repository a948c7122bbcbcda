"""Every model a run loads is checked before Ray starts: what failed inside an actor (a relative
path, an uncached hub id offline) is one ``vsd: error: <field>: ...`` line, exit 2."""

from __future__ import annotations

import pytest

from tests.fixtures.infra import REPO
from vsd.cli import main
from vsd.preflight import PreflightError, check_models, run_models


def _annotate(tmp_path, *extra: str) -> list[str]:
    (tmp_path / "images").mkdir(exist_ok=True)
    return [
        "annotate",
        "--config",
        str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"),
        "--input",
        str(tmp_path / "images"),
        "--output",
        str(tmp_path / "out"),
        "progress_bars=false",
        *extra,
    ]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vsd: error: ") and "Traceback" not in err, err
    return lines[0]


def test_relative_model_paths_of_every_model_mean_this_folder(tmp_path, monkeypatch, capsys, annotate_config):
    """Each model is loaded inside its own actor, which does not run in this folder: a relative
    path is made absolute on the driver (refine, propose, depth too), and checked there."""
    (tmp_path / "models" / "export").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert main(_annotate(tmp_path, "stages.propose.enabled=true", "stages.propose.model=./detector")) == 2
    assert _one_error_line(capsys) == (
        f"vsd: error: stages.propose.model: {tmp_path}/detector: not found "
        "(expected a checkpoint folder or s3:// prefix, a hub id org/name or tiny:llava)"
    )
    assert not (tmp_path / "out").exists()  # nothing started, nothing written
    cfg = annotate_config(
        str(tmp_path / "images"),
        str(tmp_path / "out"),
        "stages.refine.mode=hf",
        "stages.refine.model=models/export",
        "stages.propose.enabled=true",
        "stages.propose.model=models/export",
    )
    cfg.check_paths()
    assert cfg.stages.refine.model == cfg.stages.propose.model == str(tmp_path / "models" / "export")
    check_models(cfg)
    cfg.stages.refine.model = "models/export"  # a config built in code, never through check_paths
    with pytest.raises(PreflightError, match="stages.refine.model: models/export: a relative path"):
        check_models(cfg)


def test_an_uncached_hub_id_offline_is_one_line_for_every_model_field(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(_annotate(tmp_path, "stages.propose.enabled=true")) == 2  # the issue: 548 lines
    line = _one_error_line(capsys)
    assert line.startswith(
        "vsd: error: stages.propose.model: IDEA-Research/grounding-dino-tiny: a hub id, but "
    )
    assert "HF_HUB_OFFLINE=1" in line and str(tmp_path / "hub") in line
    detector = str(REPO / "vsd" / "assets" / "tiny-detector")
    assert (
        main(
            _annotate(
                tmp_path,
                "stages.propose.enabled=true",
                f"stages.propose.model={detector}",
                "stages.propose.depth=true",
            )
        )
        == 2
    )
    assert _one_error_line(capsys).startswith("vsd: error: stages.propose.depth_model: depth-anything/")
    assert main(_annotate(tmp_path, "--model", "llava-hf/llava-1.5-7b-hf")) == 2
    assert _one_error_line(capsys).startswith("vsd: error: engine.model: llava-hf/llava-1.5-7b-hf: a hub id")


def test_a_cached_hub_id_offline_passes_and_online_nothing_is_asked(tmp_path, monkeypatch, annotate_config):
    cfg = annotate_config(str(tmp_path), str(tmp_path / "out"), "stages.propose.enabled=true")
    assert ("stages.propose.model", "IDEA-Research/grounding-dino-tiny") in run_models(cfg)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    with pytest.raises(PreflightError):
        check_models(cfg)
    # The cache's own layout, as `huggingface-cli download` leaves it.
    repo = hub / "models--IDEA-Research--grounding-dino-tiny"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    check_models(cfg)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    check_models(annotate_config(str(tmp_path), str(tmp_path / "out"), "engine.model=org/not-cached"))


def test_an_sglang_generator_folder_that_is_no_sglang_export_is_one_line(tmp_path, capsys, tiny_llava_dir):
    """The sglang backend's own preflight check: a transformers-layout folder, which SGLang cannot
    serve as LLaVA, is refused before Ray starts, naming the export that fixes it."""
    code = main(_annotate(tmp_path, "engine.kind=sglang", f"engine.model={tiny_llava_dir}"))
    assert code == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"vsd: error: engine.model: {tiny_llava_dir} is LlavaForConditionalGeneration")
    assert "`vsd export --layout sglang`" in line and not (tmp_path / "out").exists()
