"""The VSD reader on the real validation files, on broken input, with images, and from S3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vsd.data.vsd_json import Problem, read_vsd
from vsd.errors import VSDError
from vsd.relations import RELATIONS


@pytest.fixture(scope="module")
def real(vsd_val_files):
    v1, v2 = vsd_val_files
    return read_vsd(str(v1), str(v2)), json.loads(v1.read_text()), json.loads(v2.read_text())


def test_real_files_one_record_per_triple_with_all_captions(real):
    read, raw1, raw2 = real
    assert read.problems == []
    n_triples = sum(len(r["triple_list"]) for r in raw1)
    assert len(read.records) == n_triples == 3138
    assert len({r.record_id for r in read.records}) == n_triples
    first = read.records[0]
    assert first.record_id == "2670-p0" and first.relation == "on" and first.dataset == "VSDv1+VSDv2"
    assert first.subject_box_px == (197, 235, 90, 124)
    assert first.caption_v2 == "The window on the third floor is on the blue building."
    # all VSDv1 captions, duplicates removed in order
    assert first.captions == (
        "window on a house",
        "a window is shown on a house.",
        "there is a window on the house.",
        "there is a window on a house.",
    )
    # no images: sizes and normalised boxes are unknown, not guessed
    assert first.width is None and first.subject_box is None and first.image is None
    assert {r.relation for r in read.records} == set(RELATIONS)


def test_real_files_vsdv2_caption_goes_to_its_own_triple(real):
    read, raw1, raw2 = real
    by_id = {}
    for rec in read.records:
        by_id.setdefault(rec.img_id, []).append(rec)
    multi = [(r1, r2) for r1, r2 in zip(raw1, raw2) if len(r1["triple_list"]) > len(r2["triple_list"])]
    assert len(multi) == 156
    for r1, _r2 in multi:
        recs = by_id[r1["img_id"]]
        assert [r.triple_index for r in recs] == list(range(len(r1["triple_list"])))
        assert recs[0].caption_v2 is not None  # VSDv2 has the first triple only
        assert all(r.caption_v2 is None for r in recs[1:])
        assert all(r.captions == recs[0].captions for r in recs)  # VSDv1 captions are per image
    with_v2 = sum(r.caption_v2 is not None for r in read.records)
    assert with_v2 == sum(len(r["triple_list"]) for r in raw2) == 2931  # every VSDv2 triple got its sentence


def _write(path: Path, records) -> str:
    path.write_text(json.dumps(records))
    return str(path)


@pytest.fixture
def small(vsd_val_files):
    v1, v2 = vsd_val_files
    return json.loads(v1.read_text())[:30], json.loads(v2.read_text())[:30]


def _ids(read) -> set[str]:
    return {r.record_id for r in read.records}


def test_bad_records_are_skipped_with_file_and_index_and_nothing_valid_is_lost(tmp_path, small):
    raw1, raw2 = small
    good = read_vsd(_write(tmp_path / "g1.json", raw1), _write(tmp_path / "g2.json", raw2))
    bad1 = json.loads(json.dumps(raw1))
    bad1[3]["triple_list"][0]["p"] = "inside of"
    bad1[5]["triple_list"][0]["s_bbox"][1] = float("nan")
    bad1[7]["triple_list"][0]["o"] = "  "
    bad1[8]["triple_list"][0]["o_bbox"] = [50, 10, 0, 20]  # ymin > ymax
    del bad1[9]["triple_list"][0]["s_bbox"]
    del bad1[10]["captions"]
    f1 = _write(tmp_path / "v1.json", bad1)
    read = read_vsd(f1, _write(tmp_path / "v2.json", raw2))
    reasons = {(p.index, p.reason) for p in read.problems}
    assert reasons == {
        (3, "unknown relation"),
        (5, "non-finite box"),
        (7, "empty name"),
        (8, "box out of order"),
        (9, "missing field"),
        (10, "missing field"),
    }
    assert all(p.file == f1 for p in read.problems)
    assert "record 3 triple 0: unknown relation: p = 'inside of'" in str(read.problems[0])
    assert all("\n" not in str(p) for p in read.problems)
    lost = {f"{raw1[i]['img_id']}-p0" for i in (3, 5, 7, 8, 9)}
    # record 10 lost its VSDv1 captions, but its VSDv2 triple is still valid and kept
    assert _ids(read) == _ids(good) - lost
    rec10 = next(r for r in read.records if r.img_id == raw1[10]["img_id"])
    assert rec10.captions == () and rec10.caption_v2


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (
            lambda r: r[3]["triple_list"][0].__setitem__("p", "inside of"),
            "record 3 triple 0: unknown relation",
        ),
        (
            lambda r: r[5]["triple_list"][0]["s_bbox"].__setitem__(1, float("nan")),
            "record 5 triple 0: non-finite box",
        ),
    ],
)
def test_strict_raises_one_line_naming_file_and_record(tmp_path, small, mutate, reason):
    raw1, raw2 = small
    raw1 = json.loads(json.dumps(raw1))
    mutate(raw1)
    f1 = _write(tmp_path / "v1.json", raw1)
    with pytest.raises(VSDError) as err:
        read_vsd(f1, _write(tmp_path / "v2.json", raw2), strict=True)
    msg = str(err.value)
    assert msg.startswith(f"{f1}: {reason}") and "\n" not in msg


def test_truncated_json_keeps_every_record_before_the_cut(tmp_path, small):
    raw1, _ = small
    text = json.dumps(raw1, indent=1)
    cut = text.index(json.dumps(raw1[20]["img_id"]))  # inside record 20
    f1 = tmp_path / "trunc.json"
    f1.write_text(text[: cut + 5])
    read = read_vsd(str(f1))
    assert [p.reason for p in read.problems] == ["invalid JSON"]
    assert read.problems[0].index == 20 and "truncated" in str(read.problems[0])
    assert {r.img_id for r in read.records} == {r["img_id"] for r in raw1[:20]}
    with pytest.raises(VSDError, match=r"trunc\.json: record 20: invalid JSON"):
        read_vsd(str(f1), strict=True)


@pytest.mark.parametrize(
    "text, detail",
    [
        ("", "expected a list"),
        ("{}", "expected a list"),
        ("[1, 2", "record 1: bad record"),
        ('[{"img_id": "1"}] x', "missing field"),
    ],
)
def test_other_malformed_files(tmp_path, text, detail):
    f = tmp_path / "x.json"
    f.write_text(text)
    read = read_vsd(str(f))
    assert read.records == [] and detail in " ".join(str(p) for p in read.problems)


def test_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(VSDError, match="nope.json: file not found"):
        read_vsd(str(tmp_path / "nope.json"))
    with pytest.raises(VSDError, match="at least one"):
        read_vsd()


def test_pairs_by_img_id_when_the_order_differs(tmp_path, small):
    raw1, raw2 = small
    shuffled = list(reversed(raw2))
    a = read_vsd(_write(tmp_path / "a1.json", raw1), _write(tmp_path / "a2.json", raw2))
    b = read_vsd(_write(tmp_path / "b1.json", raw1), _write(tmp_path / "b2.json", shuffled))
    assert [(r.record_id, r.caption_v2) for r in a.records] == [
        (r.record_id, r.caption_v2) for r in b.records
    ]


def test_vsdv2_triple_that_differs_is_reported_not_attached(tmp_path, small):
    raw1, raw2 = small
    raw2 = json.loads(json.dumps(raw2))
    raw2[0]["triple_list"][0]["p"] = "under"
    read = read_vsd(_write(tmp_path / "v1.json", raw1), _write(tmp_path / "v2.json", raw2))
    assert [p.reason for p in read.problems] == ["triple differs from VSDv1"]
    assert read.records[0].relation == raw1[0]["triple_list"][0]["p"] and read.records[0].caption_v2 is None


def test_images_give_sizes_normalised_boxes_and_bounds_checks(tmp_path, synthetic_scenes):
    d = Path(synthetic_scenes)
    read = read_vsd(str(d / "vsdv1.json"), str(d / "vsdv2.json"), images=str(d / "images"))
    assert read.problems == [] and read.missing_images == []
    rec = read.records[0]
    ymin, ymax, xmin, xmax = rec.subject_box_px
    assert rec.subject_box == pytest.approx(
        (xmin / rec.width, ymin / rec.height, xmax / rec.width, ymax / rec.height)
    )
    assert rec.image.endswith(rec.img_id)
    # a box past the image edge is caught once the size is known
    raw = json.loads((d / "vsdv1.json").read_text())
    raw[0]["triple_list"][0]["s_bbox"][3] = rec.width + 5
    read = read_vsd(_write(tmp_path / "v1.json", raw), images=str(d / "images"))
    assert [(p.index, p.reason) for p in read.problems] == [(0, "box outside image")]
    # an image that is missing: the record stays, size unknown
    (tmp_path / "imgs").mkdir()
    read = read_vsd(str(d / "vsdv1.json"), images=str(tmp_path / "imgs"))
    assert len(read.records) == 63 and len(read.missing_images) == 63 and read.records[0].subject_box is None


def test_reads_vsd_files_and_images_from_s3(s3_bucket, synthetic_scenes, vsd_val_files):
    import boto3

    s3 = boto3.client("s3")
    bucket = s3_bucket[len("s3://") :]
    d = Path(synthetic_scenes)
    for path in [d / "vsdv1.json", d / "vsdv2.json", *sorted((d / "images").iterdir())[:9]]:
        s3.upload_file(str(path), bucket, f"synth/{path.relative_to(d)}")
    s3.upload_file(str(vsd_val_files[0]), bucket, "real/VSDv1_val.json")
    read = read_vsd(
        f"{s3_bucket}/synth/vsdv1.json", f"{s3_bucket}/synth/vsdv2.json", images=f"{s3_bucket}/synth/images"
    )
    local = read_vsd(str(d / "vsdv1.json"), str(d / "vsdv2.json"), images=str(d / "images"))
    assert [r.record_id for r in read.records] == [r.record_id for r in local.records]
    with_image = [r for r in read.records if r.image]
    assert len(with_image) == 9 and all(r.image.startswith(s3_bucket) and r.width for r in with_image)
    assert [r.subject_box for r in with_image] == [r.subject_box for r in local.records[:9]]
    real = read_vsd(f"{s3_bucket}/real/VSDv1_val.json")
    assert len(real.records) == 3138 and real.records[0].dataset == "VSDv1"
    with pytest.raises(VSDError, match="file not found"):
        read_vsd(f"{s3_bucket}/real/missing.json")


def test_problem_is_one_line():
    p = Problem("f.json", 4, "bad box", "s_bbox must be\n[...]", triple=1)
    assert str(p) == "f.json: record 4 triple 1: bad box: s_bbox must be [...]"
