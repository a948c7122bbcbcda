"""`vsd data build` / `vsd data synth` end to end: real VSD files, synthetic scenes, S3, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from vsd import storage
from vsd.cli import main
from vsd.data.instructions import build
from vsd.data.visual_prompt import OBJECT_COLOR, SUBJECT_COLOR
from vsd.data.vsd_json import read_vsd
from vsd.relations import RELATIONS
from vsd.schema import INSTRUCTION_SCHEMA


def check_llava(entries: list[dict], images_root: Path | None) -> None:
    """What LLaVA's LazySupervisedDataset needs: ids, a human/gpt pair, <image> iff an image."""
    assert isinstance(entries, list) and entries
    assert len({e["id"] for e in entries}) == len(entries)
    for e in entries:
        assert set(e) <= {"id", "image", "conversations"}
        turns = e["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"]
        assert all(isinstance(t["value"], str) and t["value"].strip() for t in turns)
        has_image = "image" in e
        assert turns[0]["value"].count("<image>") == (1 if has_image else 0)
        if has_image:
            assert turns[0]["value"].startswith("<image>\n")
            assert images_root is not None and (images_root / e["image"]).is_file()


@pytest.fixture(scope="module")
def real_build(vsd_val_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("real_build")
    v1, v2 = vsd_val_files
    rc = main(["data", "build", "--vsd1", str(v1), "--vsd2", str(v2), "--out", str(out), "--split", "val"])
    assert rc == 0
    return out


def test_real_files_three_rows_per_triple_and_stats(real_build):
    stats = json.loads((real_build / "stats.json").read_text())
    assert stats["records"] == 3138 and stats["rows"] == 3 * 3138
    assert stats["rows_per_task"] == {"1": 3138, "2": 3138, "3": 3138}
    assert set(stats["rows_per_relation"]) == set(RELATIONS)
    assert sum(stats["rows_per_relation"].values()) == stats["rows"]
    assert stats["skipped"] == {"total": 0, "by_reason": {}, "problems": []}
    assert sum(stats["answer_sources"]["task2"].values()) == 3138
    assert stats["images"] == {"written": 0, "rows_without_image": 9414}


def test_real_files_json_is_llava_data_and_parquet_follows_the_schema(real_build):
    entries = json.loads((real_build / "instructions.json").read_text())
    check_llava(entries, None)
    assert len(entries) == 9414
    table = pq.read_table(real_build / "instructions.parquet")
    assert table.schema.equals(INSTRUCTION_SCHEMA, check_metadata=False) and table.num_rows == 9414
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == [e["id"] for e in entries]
    for row, entry in zip(rows, entries):
        assert entry["conversations"][0]["value"] == row["prompt"]
        assert entry["conversations"][1]["value"] == row["answer"]
        assert row["split"] == "val" and row["references"]
        if row["task"] == 1:
            assert row["answer"] == row["relation"] in RELATIONS
        elif row["task"] == 2:
            assert "\n" not in row["answer"]
        else:
            assert len(row["answer"].split("\n")) == 3
    first = rows[0]
    assert first["id"] == "2670-p0-t1" and first["record_id"] == "2670-p0" and first["subject_box"] is None


def test_same_seed_same_output_other_seed_other_task3_picks(vsd_val_files, real_build, tmp_path):
    v1, v2 = vsd_val_files
    assert (
        main(
            [
                "data",
                "build",
                "--vsd1",
                str(v1),
                "--vsd2",
                str(v2),
                "--out",
                str(tmp_path / "a"),
                "--split",
                "val",
            ]
        )
        == 0
    )
    assert (tmp_path / "a/instructions.json").read_bytes() == (real_build / "instructions.json").read_bytes()
    assert pq.read_table(tmp_path / "a/instructions.parquet").equals(
        pq.read_table(real_build / "instructions.parquet")
    )
    assert (
        main(
            [
                "data",
                "build",
                "--vsd1",
                str(v1),
                "--vsd2",
                str(v2),
                "--out",
                str(tmp_path / "b"),
                "--seed",
                "1",
                "--split",
                "val",
            ]
        )
        == 0
    )
    a = json.loads((tmp_path / "a/instructions.json").read_text())
    b = json.loads((tmp_path / "b/instructions.json").read_text())
    diff = [x["id"] for x, y in zip(a, b) if x != y]
    assert diff and all(i.endswith("-t3") for i in diff)


def test_synthetic_build_writes_visual_prompt_images(synthetic_scenes, tmp_path, capsys):
    d = Path(synthetic_scenes)
    out = tmp_path / "out"
    assert (
        main(
            [
                "data",
                "build",
                "--vsd1",
                str(d / "vsdv1.json"),
                "--vsd2",
                str(d / "vsdv2.json"),
                "--images",
                str(d / "images"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "wrote 189 rows (63 triples x 3 tasks)" in printed and "skipped 0" in printed
    entries = json.loads((out / "instructions.json").read_text())
    check_llava(entries, out)
    assert all("image" in e for e in entries)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["images"] == {"written": 63, "rows_without_image": 0} and stats["datasets"] == ["synthetic"]
    rows = pq.read_table(out / "instructions.parquet").to_pylist()
    row = rows[0]
    with Image.open(out / row["image"]) as im:
        im = im.convert("RGB")
        assert im.size == (row["width"], row["height"])
        x0 = round(row["subject_box"][0] * im.width)
        y_mid = round((row["subject_box"][1] + row["subject_box"][3]) / 2 * im.height)
        r, g, b = im.getpixel((x0, y_mid))
        assert r > 180 and g < 90 and b < 90  # red subject edge (JPEG, so not exact)
        ox0 = round(row["object_box"][0] * im.width)
        oy_mid = round((row["object_box"][1] + row["object_box"][3]) / 2 * im.height)
        r, g, b = im.getpixel((ox0, oy_mid))
        assert g > 180 and r < 90 and b < 90
    assert row["source_image"].endswith(row["img_id"])
    assert SUBJECT_COLOR == (255, 0, 0) and OBJECT_COLOR == (0, 255, 0)


def test_broken_image_is_skipped_with_a_reason_others_kept(synthetic_scenes, tmp_path):
    d = Path(synthetic_scenes)
    images = tmp_path / "images"
    images.mkdir()
    for f in (d / "images").iterdir():
        (images / f.name).write_bytes(f.read_bytes())
    victim = sorted(images.iterdir())[4]
    victim.write_bytes(victim.read_bytes()[:60])  # header intact, pixels gone
    read = read_vsd(str(d / "vsdv1.json"), str(d / "vsdv2.json"), images=str(images))
    stats = build(read.records, str(tmp_path / "out"), problems=read.problems)
    assert stats["skipped"]["by_reason"] == {"unreadable image": 1}
    assert victim.name in stats["skipped"]["problems"][0]
    assert stats["records"] == 62


def test_bad_input_cli_strict_fails_one_line_else_skips(vsd_val_files, tmp_path, capsys):
    raw = json.loads(vsd_val_files[0].read_text())[:12]
    raw[3]["triple_list"][0]["p"] = "inside of"
    raw[6]["triple_list"][0]["o_bbox"][0] = float("nan")
    text = json.dumps(raw)
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    trunc = tmp_path / "trunc.json"
    trunc.write_text(text[: len(text) - 200])
    for f, first in (
        (bad, "record 3 triple 0: unknown relation"),
        (trunc, "record 3 triple 0: unknown relation"),
    ):
        assert main(["data", "build", "--vsd1", str(f), "--out", str(tmp_path / "o"), "--strict"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"vsd: error: {f}: {first}") and "\n" not in err and "Traceback" not in err
    assert main(["data", "build", "--vsd1", str(trunc), "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "skipped 3 (invalid JSON: 1, non-finite box: 1, unknown relation: 1)" in printed
    stats = json.loads((tmp_path / "o/stats.json").read_text())
    good_ids = {r["img_id"] for i, r in enumerate(raw[:11]) if i not in (3, 6)}
    built = {row["img_id"] for row in pq.read_table(tmp_path / "o/instructions.parquet").to_pylist()}
    assert built == good_ids and stats["records"] == sum(
        len(raw[i]["triple_list"]) for i in range(11) if i not in (3, 6)
    )
    # truncated alone, strict: the cut is named
    five = json.loads(vsd_val_files[0].read_text())[:5]
    text = json.dumps(five)
    trunc.write_text(text[: text.index(json.dumps(five[4]["img_id"])) + 3])
    assert main(["data", "build", "--vsd1", str(trunc), "--out", str(tmp_path / "o"), "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vsd: error: {trunc}: record 4: invalid JSON") and "\n" not in err


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "build", "--vsd1", str(tmp_path / "none.json"), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"vsd: error: {tmp_path / 'none.json'}: file not found"
    assert main(["data", "build", "--out", str(tmp_path)]) == 2
    assert main(["data", "synth", "--n", "0", "--out", str(tmp_path)]) == 2
    assert main(["data", "synth", "--n", "2", "--out", str(tmp_path), "--size", "16"]) == 2
    assert "too small" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "synth", "--n", "2", "--out", str(tmp_path), "--size", "big"])


def test_synth_and_build_on_s3(s3_bucket, capsys):
    assert (
        main(
            [
                "data",
                "synth",
                "--n",
                "18",
                "--out",
                f"{s3_bucket}/synth",
                "--seed",
                "4",
                "--size",
                "64x80",
                "--format",
                "jpg",
            ]
        )
        == 0
    )
    assert "wrote 18 scenes" in capsys.readouterr().out
    assert (
        main(
            [
                "data",
                "build",
                "--vsd1",
                f"{s3_bucket}/synth/vsdv1.json",
                "--vsd2",
                f"{s3_bucket}/synth/vsdv2.json",
                "--images",
                f"{s3_bucket}/synth/images",
                "--out",
                f"{s3_bucket}/built",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    files = storage.list_files(f"{s3_bucket}/built")
    names = {f.rsplit("/", 1)[-1] for f in files}
    assert {"instructions.json", "instructions.parquet", "stats.json"} <= names
    assert sum(f.endswith(".jpg") for f in files) == 18, (printed, storage.list_files(f"{s3_bucket}/synth"))
    stats = json.loads(storage.read_text(f"{s3_bucket}/built/stats.json"))
    assert stats["rows"] == 54 and stats["images"]["written"] == 18
