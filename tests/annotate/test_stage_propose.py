"""The propose stage: raw images get detected pairs (exactly once, reruns identical), the rest passes.

The end-to-end test runs `vsd annotate` on a real local Ray cluster over a folder of raw synthetic
scenes with the committed tiny detector (`vsd/assets/tiny-detector`) and the tiny hf LLaVA; the
unit tests call the stage's UDF directly with tiny random OWL-ViT / Depth Anything checkpoints
(the fixtures in tests/fixtures/propose.py).
"""

from __future__ import annotations

import io
from collections import Counter

import pytest
import yaml

from tests.fixtures.annotate import read_rows
from tests.fixtures.infra import REPO
from tests.fixtures.propose import NAMES
from vsd.annotate.items import SCENE, from_table, new_item, new_pair, to_table
from vsd.annotate.stages import STAGES, propose
from vsd.annotate.stages.propose import NO_PAIR, ProposeStageConfig, ProposeStageUDF
from vsd.annotate.stages.verify import check
from vsd.cli import main
from vsd.config import from_dict, to_dict
from vsd.relations import RELATIONS, box_is_valid


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def scenes(n: int, seed: int = 31):
    from vsd.demo.synthetic_truth import labelled_scenes

    return [s[0] for s in labelled_scenes(n, seed, size=64)]


def stage_config(model: str, **settings) -> ProposeStageConfig:
    # A random OWL-ViT puts its boxes on a few saturated spots: no NMS, same-box pairs allowed.
    base = {
        "enabled": True,
        "model": model,
        "vocabulary": NAMES,
        "score_threshold": 0.0,
        "nms_iou": 1.0,
        "device": "cpu",
        "dtype": "float32",
        "max_detections": 4,
        "pairs": {"max_pairs": 3, "max_pair_iou": 1.0},
    }
    return from_dict(ProposeStageConfig, {**base, **settings})


def run_udf(cfg: ProposeStageConfig, items: list[dict]) -> list[dict]:
    return from_table(ProposeStageUDF(cfg, max_pixels=64_000_000)(to_table(items)))


def raw_item(data: bytes, uri: str = "mem://a.png") -> dict:
    item = new_item(uri, image_id=uri)
    item["data"] = data
    return item


def test_sits_between_read_and_preprocess_and_is_off_by_default():
    names = [s.NAME for s in STAGES]
    assert names.index("read") + 1 == names.index("propose") == names.index("preprocess") - 1
    from vsd.annotate.config import load_config

    cfg = load_config(str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"), [])
    assert not propose.enabled(cfg) and cfg.stages.propose.model == "IDEA-Research/grounding-dino-tiny"
    assert propose.enabled(
        load_config(str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"), ["stages.propose.enabled=true"])
    )


def test_raw_images_get_detected_pairs_and_everything_else_passes_untouched(owlvit_dir):
    image = scenes(1)[0]
    given = raw_item(png(image), "mem://given.png")
    given["pairs"] = [
        new_pair(0, "cup", "table", [0.1, 0.1, 0.3, 0.3], [0.4, 0.4, 0.9, 0.9], box_source="given")
    ]
    broken = raw_item(b"<html>not an image</html>", "mem://broken.png")
    failed = raw_item(png(image), "mem://failed.png")
    failed.update(status="error", error="read_error: x")
    items = [raw_item(png(image)), given, broken, failed, raw_item(png(image.convert("L")), "mem://gray.png")]
    out = run_udf(stage_config(owlvit_dir), items)
    raw, kept_given, kept_broken, kept_failed, gray = out
    given, broken, failed = from_table(to_table(items[1:4]))  # as the stage saw them (float32 boxes)
    assert [p["pair_index"] for p in raw["pairs"]] == [0, 1, 2]
    for p in raw["pairs"] + gray["pairs"]:
        assert p["box_source"] == "detected" and p["subject"] in NAMES and p["object"] in NAMES
        assert box_is_valid(p["subject_box"]) and box_is_valid(p["object_box"])
        assert 0 <= p["subject_score"] <= 1 and 0 <= p["object_score"] <= 1 and 0 <= p["pair_score"] <= 1
        assert p["subject_depth"] is None and p["depth_kind"] is None and p["status"] == "ok"
    assert raw["data"] is not None  # preprocess still needs the bytes
    assert kept_given["pairs"] == given["pairs"]
    for before, after in ((broken, kept_broken), (failed, kept_failed)):
        assert after["pairs"] == before["pairs"] and after["pairs"][0]["pair_index"] == SCENE
    # deterministic: the same image gives the same pairs, alone or in another batch
    again = run_udf(stage_config(owlvit_dir), [raw_item(png(image))])[0]
    assert again["pairs"] == raw["pairs"]


def test_read_marks_given_pairs_given_and_leaves_the_scene_pair_unsourced():
    from vsd.annotate.stages.read import item_from_row

    box = [0.1, 0.1, 0.3, 0.3]
    given = item_from_row(
        {
            "uri": "/c/a.png",
            "row": 0,
            "pairs": [
                {"index": 3, "subject": "cup", "object": "table", "subject_box": box, "object_box": box}
            ],
        },
        "s0",
    )
    assert [(p["pair_index"], p["box_source"], p["subject_score"]) for p in given["pairs"]] == [
        (3, "given", None)
    ]
    scene = item_from_row({"uri": "/c/b.png", "row": 1, "pairs": []}, "s0")
    assert [(p["pair_index"], p["box_source"]) for p in scene["pairs"]] == [(SCENE, None)]
    assert propose.wants_proposal({**scene, "data": b"x"}) and not propose.wants_proposal(
        {**given, "data": b"x"}
    )


def test_no_pair_keeps_the_scene_task_flagged(owlvit_dir):
    item = run_udf(stage_config(owlvit_dir, score_threshold=1.0), [raw_item(png(scenes(1)[0]))])[0]
    assert [p["pair_index"] for p in item["pairs"]] == [SCENE] and item["pairs"][0]["flags"] == [NO_PAIR]


def test_depth_fills_box_depths_and_verify_reads_them(owlvit_dir, depth_dir):
    item = run_udf(
        stage_config(owlvit_dir, depth=True, depth_model=depth_dir), [raw_item(png(scenes(1)[0]))]
    )[0]
    assert item["pairs"] and all(p["depth_kind"] == "relative" for p in item["pairs"])
    assert all(
        isinstance(p["subject_depth"], float) and isinstance(p["object_depth"], float) for p in item["pairs"]
    )
    # verify with depths: overlapping boxes, the subject clearly nearer -> 'behind' contradicts
    pair = new_pair(
        0,
        "cup",
        "plate",
        [0.2, 0.3, 0.5, 0.7],
        [0.35, 0.32, 0.7, 0.72],
        box_source="detected",
        subject_depth=8.0,
        object_depth=4.0,
        depth_kind="relative",
    )
    pair.update(relation="behind", description="The cup is behind the plate.", descriptions=[])
    check(pair)
    assert pair["geometry_relation"] == "in front of" and "geometry_contradicts:task1" in pair["flags"]
    flat = {**pair, "subject_depth": None, "flags": []}
    check(flat)  # without depth: the 2-D check, which never contradicts 'behind'
    assert flat["geometry_relation"] is None and flat["consistent"] is True


def test_config_checks_name_the_field():
    from vsd.config import ConfigError

    with pytest.raises(ConfigError, match="decode_size"):
        from_dict(ProposeStageConfig, {"decode_size": 2})
    with pytest.raises(ConfigError, match="pairs.max_pairs"):
        from_dict(ProposeStageConfig, {"pairs": {"max_pairs": -1}})


# ------------------------------------------------------------------------------ end to end


def annotate_folder(tmp_path, folder, out: str, capsys) -> list[dict]:
    """`vsd annotate` with the propose stage on (the committed tiny detector), task 1 only."""
    from vsd.demo.tiny_detector import demo_propose_config

    data = yaml.safe_load((REPO / "jobs/configs/annotate-tiny-cpu.yaml").read_text())
    settings = to_dict(demo_propose_config(pairs={"max_pairs": 3}))
    data["stages"]["propose"] = {**settings, "enabled": True, "resources": {"num_cpus": 0.5, "batch_size": 4}}
    cfg = tmp_path / "annotate-propose.yaml"
    cfg.write_text(yaml.safe_dump(data))
    assert (
        main(
            [
                "annotate",
                "--config",
                str(cfg),
                "--input",
                str(folder),
                "--output",
                out,
                "progress_bars=false",
                "tasks=[1]",
                "run_date=2026-11-29",
            ]
        )
        == 0
    )
    capsys.readouterr()
    return read_rows(out)


def test_vsd_annotate_on_raw_images_writes_detected_pairs_exactly_once(ray_local, tmp_path, capsys):
    folder = tmp_path / "raw"
    folder.mkdir()
    for i, image in enumerate(scenes(4)):
        image.save(folder / f"scene-{i}.png")
    (folder / "notes.png").write_bytes(b"just text, not pixels\n" * 4)

    rows = annotate_folder(tmp_path, folder, str(tmp_path / "out"), capsys)
    ids = Counter(r["row_id"] for r in rows)
    assert not [i for i, n in ids.items() if n > 1], "duplicated rows"
    by_uri: dict[str, list[dict]] = {}
    for r in rows:
        by_uri.setdefault(r["source_uri"].rsplit("/", 1)[-1], []).append(r)
    assert set(by_uri) == {f"scene-{i}.png" for i in range(4)} | {"notes.png"}
    assert [r["error"].split(":")[0] for r in by_uri.pop("notes.png")] == ["not_an_image"]
    detected = [r for r in rows if r["box_source"] == "detected"]
    assert len({r["image_id"] for r in detected}) >= 3  # the tiny detector finds 2+ shapes in most scenes
    for _name, image_rows in by_uri.items():
        if image_rows[0]["pair_index"] == SCENE:
            assert len(image_rows) == 1 and NO_PAIR in image_rows[0]["flags"]
            continue
        assert (
            sorted(r["pair_index"] for r in image_rows) == list(range(len(image_rows)))
            and len(image_rows) <= 3
        )
        for r in image_rows:
            assert r["status"] == "ok" and r["box_source"] == "detected" and r["relation"] in RELATIONS
            assert r["row_id"] == f"{r['image_id']}-p{r['pair_index']}" and r["subject_score"] > 0
            assert box_is_valid(r["subject_box"]) and box_is_valid(r["object_box"])

    # the same output again: nothing new, nothing written twice
    assert sorted(
        r["row_id"] for r in annotate_folder(tmp_path, folder, str(tmp_path / "out"), capsys)
    ) == sorted(ids)
    # a fresh output: the same pairs, the same row ids and boxes
    fresh = annotate_folder(tmp_path, folder, str(tmp_path / "out2"), capsys)

    def key(r):
        return (
            r["row_id"],
            r["subject"],
            r["object"],
            tuple(r["subject_box"] or ()),
            tuple(r["object_box"] or ()),
        )

    assert sorted(map(key, fresh)) == sorted(map(key, rows))
