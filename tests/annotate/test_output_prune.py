"""A file deleted from the source leaves the current table at the next run, in one commit."""

from __future__ import annotations

import json
import os

import vsd
from tests.fixtures.annotate import build_corpus, make_color_engine
from vsd import storage
from vsd.annotate.output import table
from vsd.annotate.pipeline import run_annotation


def photos(tmp_path, n: int) -> tuple[str, list[str]]:
    src = build_corpus(str(tmp_path / "src"), n, seed=31)
    folder = tmp_path / "photos"
    folder.mkdir()
    names = []
    for i, uri in enumerate(sorted(src)):
        (folder / f"p{i}.png").write_bytes(storage.read_bytes(uri))
        names.append(str(folder / f"p{i}.png"))
    return str(folder), names


def test_a_deleted_file_leaves_the_current_rows_and_stays_readable_as_of_before(
    ray_local, tmp_path, annotate_config
):
    folder, names = photos(tmp_path, 4)
    out = str(tmp_path / "out")
    run_annotation(annotate_config(folder, out), engine_factory=make_color_engine)
    assert sorted(r["source_uri"] for r in vsd.read(out).to_pylist()) == names
    os.remove(names[2])
    lines: list[str] = []
    night2 = run_annotation(
        annotate_config(folder, out, "run_date=2026-11-27"),
        engine_factory=make_color_engine,
        echo=lines.append,
    )
    assert night2.counts["images"] == 0 and any("1 row(s) of files deleted" in line for line in lines)
    assert sorted(r["source_uri"] for r in vsd.read(out).to_pylist()) == names[:2] + names[3:]
    [commit] = [c for c in table.history(out) if c.get("operation") == "prune"]
    assert commit["rows"] == "1" and "deleted from the source" in commit["reason"]
    assert len(vsd.read(out, as_of=commit["version"] - 1)) == 4  # the night before still has it
    card = storage.read_text(f"{out}/_README.md")
    assert "gets now): 3." in card and "| total | 4 |" in card  # current rows vs every row written
    night3 = run_annotation(
        annotate_config(folder, out, "run_date=2026-11-28"), engine_factory=make_color_engine
    )
    assert night3.counts["images"] == 0 and len(vsd.read(out)) == 3
    assert len([c for c in table.history(out) if c.get("operation") == "prune"]) == 1  # applied once


def test_prune_off_keeps_rows_and_a_manifest_is_append_only_by_default(ray_local, tmp_path, annotate_config):
    folder, names = photos(tmp_path, 3)
    kept = str(tmp_path / "kept")
    run_annotation(annotate_config(folder, kept, "input.prune=off"), engine_factory=make_color_engine)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"image": n}) + "\n" for n in names))
    listed = str(tmp_path / "listed")
    run_annotation(annotate_config(str(manifest), listed), engine_factory=make_color_engine)
    os.remove(names[0])
    manifest.write_text("".join(json.dumps({"image": n}) + "\n" for n in names[1:]))
    for out in (kept, listed):
        run_annotation(
            annotate_config(
                folder if out == kept else str(manifest),
                out,
                "run_date=2026-11-27",
                *(["input.prune=off"] if out == kept else []),
            ),
            engine_factory=make_color_engine,
        )
        assert len(vsd.read(out)) == 3, out
