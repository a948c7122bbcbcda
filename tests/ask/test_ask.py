"""`vsd ask`: one image and one pair through annotation's own preprocess, engine and verify stage,
with a real tiny LLaVA and a generated image, in-process and as the installed `vsd` script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.fixtures.infra import REPO
from vsd.cli import main
from vsd.relations import RELATIONS, geometric_relation, geometry_contradicts

VSD = Path(sys.executable).parent / "vsd"  # the console script installed next to this Python
# A cup (left) clearly apart from a table (right): the geometry decides "to the left of".
CUP_PX, TABLE_PX = "8,30,40,60", "80,20,150,90"  # pixels of the 160x100 image
CUP, TABLE = [0.05, 0.3, 0.25, 0.6], [0.5, 0.2, 0.9375, 0.9]
FAST = ["--set", "engine.max_new_tokens=6"]  # a random tiny model rambles: keep CPU decoding short


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ask") / "photo.png"
    image = Image.new("RGB", (160, 100), (210, 210, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 30, 40, 60), fill=(200, 40, 40))
    draw.rectangle((80, 20, 150, 90), fill=(120, 80, 40))
    image.save(path)
    return str(path)


def _ask(*argv: str) -> list[str]:
    return ["ask", *argv]


def test_ask_in_process_gives_every_task_and_the_geometry_check(photo, tiny_llava_dir, capsys):
    ray_before = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    code = main(
        _ask(photo, "--model", tiny_llava_dir, "--subject", "red cup", "--subject-box", CUP_PX)
        + ["--object", "table", "--object-box", ",".join(map(str, TABLE)), "--json", *FAST]
    )
    assert code == 0
    found = json.loads(capsys.readouterr().out)
    assert found["subject_box"] == CUP and found["object_box"] == TABLE
    assert found["box_units"] == {"subject": "pixels", "object": "normalised"}
    assert (found["width"], found["height"]) == (160, 100)
    assert found["relation"] in RELATIONS and len(found["relation_scores"]) == 9
    assert found["relation_scores"][found["relation"]] == max(found["relation_scores"].values())
    assert isinstance(found["description"], str) and isinstance(found["descriptions"], list)
    assert found["geometry_relation"] == geometric_relation(CUP, TABLE) == "to the left of"
    assert found["agrees_with_geometry"] is (not geometry_contradicts(found["relation"], CUP, TABLE))
    assert found["engine"] == {"kind": "hf", "device": "cpu"}
    assert found["input"] == {"image_size": 336, "visual_prompt": True}  # no record: the config's
    if not ray_before:  # ask started no cluster (another test of the session may have one)
        assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_ask_answers_what_the_engine_answers_for_annotations_view(photo, tiny_llava_dir, capsys):
    """The same answer as the engine on the preprocess stage's view of the same pair: ask draws,
    pads and resizes as annotation does (pixel boxes converted on the way)."""
    from vsd.annotate.engines import EngineConfig, make_engine
    from vsd.annotate.engines.base import ImageRequest
    from vsd.annotate.engines.prompting import task_prompts
    from vsd.annotate.items import new_item, new_pair
    from vsd.annotate.stages.preprocess import PreprocessStageConfig, prepare

    assert (
        main(
            _ask(photo, "--model", tiny_llava_dir, "--subject", "cup", "--subject-box", CUP_PX)
            + ["--object", "table", "--object-box", TABLE_PX, "--task", "1", "--json", *FAST]
        )
        == 0
    )
    found = json.loads(capsys.readouterr().out)
    assert found["tasks"] == [1] and found["description"] is None and found["descriptions"] is None

    item = new_item(photo, "x", [new_pair(0, "cup", "table", CUP, TABLE)])
    item["data"] = Path(photo).read_bytes()
    view = prepare(item, PreprocessStageConfig())["views"][0]
    engine = make_engine(EngineConfig(model=tiny_llava_dir, device="cpu"))
    [result] = engine.generate([ImageRequest("x", view, task_prompts("cup", "table", [1]))])
    assert found["relation"] == result.answers[0].text.strip()
    scores = [found["relation_scores"][r] for r in RELATIONS]
    assert scores == pytest.approx(result.answers[0].scores, abs=1e-4)


def _vsd(*argv: str) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    proc = subprocess.run([str(VSD), *argv], env=env, capture_output=True, text=True, timeout=300, cwd="/")
    return time.monotonic() - started, proc


def test_the_vsd_script_prints_the_answers_from_any_folder(photo, tiny_llava_dir):
    seconds, proc = _vsd(
        *_ask(photo, "--model", tiny_llava_dir, "--subject", "red cup", "--subject-box", CUP_PX),
        *["--object", "table", "--object-box", TABLE_PX, "--config", "tiny-cpu"],
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"image    {photo} (160x100) (boxes given in pixels, shown normalised)"
    assert lines[3].startswith(f"model    {tiny_llava_dir} (hf on cpu, 32 px, visual prompt on)")
    relation = next(line for line in lines if line.startswith("1 relation"))
    assert relation.split()[2] in {r.split()[0] for r in RELATIONS}
    assert any(line.startswith("2 description ") for line in lines)
    assert any(line.startswith("3 descriptions ") for line in lines)
    geometry = next(line for line in lines if line.startswith("geometry"))
    assert geometry.startswith("geometry  to the left of; task 1 ")
    assert "Traceback" not in proc.stderr and "Loading weights" not in proc.stderr
    assert seconds < 120, seconds  # seconds on a free core; generous for a shared CI box


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/nonexistent/photo.jpg"], "vsd: error: image: file not found: /nonexistent/photo.jpg"),
        (
            ["PHOTO", "--subject-box", "0.1,0.2,1.4,0.5"],
            "vsd: error: subject-box: 0.1,0.2,1.4,0.5 is neither",
        ),
        (
            ["PHOTO", "--object-box", "0.8,0.2,0.5,0.9"],
            "vsd: error: object-box: x0 0.8 must be less than x1 0.5",
        ),
        (["PHOTO", "--subject", "  "], "vsd: error: subject: must name the object"),
        (["PHOTO", "--config", "tiny-gpu"], "vsd: error: config: 'tiny-gpu' is neither a file nor a known"),
    ],
)
def test_bad_input_is_one_error_line(photo, argv, expected, capsys):
    args = dict(
        zip(["--subject", "--subject-box", "--object", "--object-box"], ["cup", CUP_PX, "table", TABLE_PX])
    )
    image = photo if argv[0] == "PHOTO" else argv[0]
    rest = argv[1:]
    for flag, value in zip(rest[::2], rest[1::2]):
        args[flag] = value
    flags = [x for kv in args.items() for x in kv if not kv[0] == "--config"]
    if "--config" in args:
        flags += ["--config", args["--config"]]
    assert main(_ask(image, "--model", "tiny:llava", *flags)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(expected), err


def test_a_bad_box_through_the_script_fails_in_seconds(photo):
    seconds, proc = _vsd(
        *_ask(photo, "--subject", "cup", "--subject-box", "40,30,8,60", "--object", "table"),
        *["--object-box", TABLE_PX],
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["vsd: error: subject-box: x0 40 must be less than x1 8"]
    assert seconds < 30, seconds  # no model was loaded


def test_ask_takes_the_input_size_from_the_models_record(photo, tiny_export_64_dir, capsys):
    base = [photo, "--model", tiny_export_64_dir, "--subject", "cup", "--subject-box", CUP_PX]
    base += ["--object", "table", "--object-box", TABLE_PX, "--task", "1", "--json"]
    assert main(_ask(*base)) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["input"] == {"image_size": 64, "visual_prompt": True}
    assert main(_ask(*base, "--set", "stages.preprocess.image_size=32")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "vsd: error: stages.preprocess.image_size: 32 px contradicts the model's record (64 px in "
    )


@pytest.mark.parametrize(
    ("relation", "geometry", "agrees", "expected"),
    [
        ("to the left of", "to the left of", True, "; task 1 agrees"),
        ("next to", "to the left of", True, '; task 1 "next to" is compatible with it'),
        ("on", None, True, '; task 1 "on" is not ruled out'),
        ("above", "under", False, '; task 1 "above" CONTRADICTS it (flag geometry_contradicts:task1)'),
        (None, "under", None, ""),
    ],
)
def test_the_geometry_verdict_reads_like_the_verify_stage(relation, geometry, agrees, expected):
    from vsd.ask.commands import verdict

    found = {"relation": relation, "geometry_relation": geometry, "agrees_with_geometry": agrees}
    assert verdict(found) == expected


def test_an_adapter_is_served_on_top_of_the_model(photo, tiny_llava_dir, tiny_adapter_dir, capsys):
    argv = [photo, "--model", tiny_llava_dir, "--subject", "cup", "--subject-box", CUP_PX]
    argv += ["--object", "table", "--object-box", TABLE_PX, "--task", "1", "--json"]
    assert main(_ask(*argv)) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(_ask(*argv, "--adapter", tiny_adapter_dir)) == 0
    adapted = json.loads(capsys.readouterr().out)
    assert adapted["adapter"] == tiny_adapter_dir and plain["adapter"] is None
    assert adapted["relation_scores"] != plain["relation_scores"]  # the LoRA weights took part
