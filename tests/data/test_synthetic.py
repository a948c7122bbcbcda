"""Synthetic scenes: exact ground truth, captions the parser reads back, determinism, variety."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from vsd.data.synthetic import BACKGROUNDS, COLORS, Shape, generate, make_scene, render, shape_mask
from vsd.data.vsd_json import read_vsd
from vsd.relations import RELATIONS, geometric_relation, geometry_contradicts, parse_relation


@pytest.fixture(scope="module")
def synthetic_900(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth900")
    result = generate(900, str(out), seed=3, size=range(64, 129))
    read = read_vsd(result.vsd1, result.vsd2, images=result.images)
    return result, read


def test_900_scenes_cover_all_relations_and_read_back_clean(synthetic_900):
    result, read = synthetic_900
    assert result.per_relation == {r: 100 for r in RELATIONS}
    assert read.problems == [] and read.missing_images == []
    assert len(read.records) == 900
    assert Counter(r.relation for r in read.records) == Counter({r: 100 for r in RELATIONS})
    assert {r.dataset for r in read.records} == {"synthetic"}
    for rec in read.records:
        assert rec.image is not None and rec.subject_box is not None and 64 <= rec.width <= 128
        assert 3 <= len(rec.captions) <= 7 and rec.caption_v2


def test_geometric_relation_never_contradicts_the_generator(synthetic_900):
    _, read = synthetic_900
    decided = Counter()
    wrong = []
    for rec in read.records:
        g = geometric_relation(rec.subject_box, rec.object_box)
        if g is not None:
            decided[g] += 1
            if g != rec.relation:
                wrong.append((rec.record_id, rec.relation, g))
        if geometry_contradicts(rec.relation, rec.subject_box, rec.object_box):  # the verify stage's check
            wrong.append((rec.record_id, rec.relation, "contradicts"))
    assert wrong == []
    # The clear cases are decided, so the check above is not vacuous.
    for rel in ("to the left of", "to the right of", "above", "under", "in"):
        assert decided[rel] == 100, (rel, decided)


def test_parser_recovers_the_relation_from_every_caption(synthetic_900):
    _, read = synthetic_900
    failures = []
    n = 0
    for rec in read.records:
        for caption in list(rec.captions) + [rec.caption_v2]:
            n += 1
            got = parse_relation(caption, rec.subject, rec.object)
            if got != rec.relation:
                failures.append((rec.relation, got, caption))
    assert n > 900 * 4
    assert failures == []


def _mask(shape: Shape, size: tuple[int, int]) -> set[tuple[int, int]]:
    px = shape_mask(shape, *size).load()
    return {(x, y) for x in range(size[0]) for y in range(size[1]) if px[x, y]}


def test_ground_truth_is_exact_in_the_pixels():
    """on: resting contact; in: containment; next to: adjacency; behind/in front of: painter's order."""
    for i in range(90):
        relation = RELATIONS[i % 9]
        scene = make_scene(i, relation, seed=11, size=(96, 80))
        (sx0, sy0, sx1, sy1), (ox0, oy0, ox1, oy1) = scene.subject.box, scene.object.box
        assert 0 <= min(sx0, sy0, ox0, oy0) and max(sx1, ox1) <= 96 and max(sy1, oy1) <= 80
        if relation == "on":
            assert sy1 == oy0 and ox0 <= sx0 and sx1 <= ox1 and scene.object.kind in ("square", "rectangle")
        elif relation == "in":
            assert ox0 < sx0 and sx1 < ox1 and oy0 < sy0 and sy1 < oy1
            assert _mask(scene.subject, (96, 80)) <= _mask(scene.object, (96, 80))
        elif relation == "next to":
            gap = max(ox0 - sx1, sx0 - ox1)
            assert 0 <= gap <= 1 and min(sy1, oy1) > max(sy0, oy0)
        elif relation in ("behind", "in front of"):
            image = render(scene)
            both = _mask(scene.subject, image.size) & _mask(scene.object, image.size)
            assert both, "the shapes must really overlap"
            front = scene.object if relation == "behind" else scene.subject
            px = image.load()
            assert len(both) >= 0.1 * min(
                len(_mask(scene.subject, image.size)), len(_mask(scene.object, image.size))
            )
            fill = COLORS[front.color]
            outline = tuple(max(0, c - 70) for c in fill)
            assert all(px[p] in (fill, outline) for p in both)


def test_same_seed_same_set_and_other_seed_differs(tmp_path: Path):
    a = generate(27, str(tmp_path / "a"), seed=5, size=72)
    b = generate(27, str(tmp_path / "b"), seed=5, size=72)
    c = generate(27, str(tmp_path / "c"), seed=6, size=72)
    for name in ("vsdv1.json", "vsdv2.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    files = sorted(p.name for p in (tmp_path / "a" / "images").iterdir())
    assert len(files) == 27
    assert all(
        (tmp_path / "a/images" / f).read_bytes() == (tmp_path / "b/images" / f).read_bytes() for f in files
    )
    assert a.per_relation == b.per_relation == c.per_relation


def test_scenes_vary_in_shape_colour_size_and_background():
    scenes = [make_scene(i, RELATIONS[i % 9], seed=1, size=range(64, 129)) for i in range(180)]
    assert len({s.subject.kind for s in scenes} | {s.object.kind for s in scenes}) == 6
    assert len({s.subject.color for s in scenes}) >= 10
    assert len({s.background for s in scenes}) == len(BACKGROUNDS)
    assert len({(s.width, s.height) for s in scenes}) > 50
    assert any(s.distractors for s in scenes)
    assert all(s.subject.name != s.object.name for s in scenes)
    # several phrasings per relation
    for rel in RELATIONS:
        texts = {c for s in scenes if s.relation == rel for c in s.captions}
        assert len(texts) >= 15, rel


def test_vsd_format_and_jpeg_output(tmp_path: Path):
    generate(9, str(tmp_path), seed=2, size=(100, 70), image_format="jpg")
    v1 = json.loads((tmp_path / "vsdv1.json").read_text())
    v2 = json.loads((tmp_path / "vsdv2.json").read_text())
    assert [r["img_id"] for r in v1] == [r["img_id"] for r in v2]
    rec = v1[0]
    assert set(rec) >= {"img_id", "triple_list", "captions"} and rec["img_id"].endswith(".jpg")
    t = rec["triple_list"][0]
    ymin, ymax, xmin, xmax = t["s_bbox"]
    assert ymin < ymax <= 70 and xmin < xmax <= 100
    assert len(v2[0]["captions"]) == 1
    with Image.open(tmp_path / "images" / rec["img_id"]) as im:
        assert im.format == "JPEG" and im.size == (100, 70)


def test_generate_rejects_bad_arguments(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown relations"):
        generate(3, str(tmp_path), relations=["inside of"])
    with pytest.raises(ValueError, match="too small"):
        generate(1, str(tmp_path), size=8)
