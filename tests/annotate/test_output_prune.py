"""A file deleted from the source leaves the current table at the next run, in one commit."""

from __future__ import annotations

import json
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq

import vsd
from tests.fixtures.annotate import build_corpus, make_color_engine
from vsd import storage
from vsd.annotate.index import Output
from vsd.annotate.output import released, table
from vsd.annotate.output.delete import remove_uris
from vsd.annotate.output.prune import gone_uris, prune
from vsd.annotate.pipeline import run_annotation
from vsd.corpus import Corpus, sync
from vsd.corpus.listing import gone_syncs


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


def _table_of(root, files: dict[str, list[str]]) -> None:
    """A table with one data file per entry ({name: its rows' source URIs}), committed at once."""
    parts = []
    for name, uris in files.items():
        rows = [
            {
                "row_id": f"{name}{i}-p0",
                "image_id": f"{name}{i}",
                "status": "ok",
                "source_uri": u,
                "run_id": "r1",
            }
            for i, u in enumerate(uris)
        ]
        part = table.Part("2026-11-26", f"part-{name}.parquet", len(rows))
        (root / "run_date=2026-11-26").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=table.FILE_SCHEMA), root / part.path)
        parts.append(part)
    table.commit_parts(str(root), parts, {"run_id": "r1"})


def test_the_prune_reads_whole_only_the_files_its_column_scan_found_holding_deleted_files(
    tmp_path, monkeypatch
):
    images = tmp_path / "images"
    images.mkdir()
    names = [str(images / f"{i}.png") for i in range(6)]
    for i, name in enumerate(names):
        with open(name, "wb") as f:
            f.write(bytes([i]) * (i + 1))
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    sync(corpus, str(images))
    os.remove(names[1])
    os.remove(names[4])
    assert sync(corpus, str(images)).listing.gone == 2
    out = tmp_path / "out"
    # b holds no deleted file, but its min/max of source_uri spans one (the log's statistics
    # cannot rule it out): only the column scan can say it need not be read whole
    _table_of(out, {"a": names[:2], "b": [names[2], names[5]], "c": [names[3], names[4]]})
    before = tmp_path / "before"
    shutil.copytree(out, before)

    reads: list[tuple[str, object]] = []
    real = pq.read_table

    def counted(source, *args, **kwargs):
        reads.append((os.path.basename(str(source)), kwargs.get("columns")))
        return real(source, *args, **kwargs)

    monkeypatch.setattr(pq, "read_table", counted)
    removed, version = prune(Output(str(out)), corpus.root)
    monkeypatch.undo()
    assert removed == 2 and version is not None
    scans = sorted(name for name, cols in reads if cols == ["source_uri"])
    whole = sorted(name for name, cols in reads if cols is None)
    assert scans == ["part-a.parquet", "part-b.parquet", "part-c.parquet"]  # one column of each
    assert whole == ["part-a.parquet", "part-c.parquet"]  # the second pass: only the files with hits
    ids = sorted(name for name, cols in reads if cols == ["source_uri", "image_id"])
    assert ids == ["part-a.parquet", "part-c.parquet"]  # the released ids: from those files only
    [commit] = [c for c in table.history(str(out)) if c.get("operation") == "prune"]
    [when] = gone_syncs(corpus.root)
    assert commit["rows"] == "2" and commit["reason"] == f"deleted from the source (corpus syncs {when})"

    # the same rows leave as when every file is scanned again (the removal before this change)
    uris, _, ids = gone_uris(str(before), [when], corpus.root)
    assert uris == [names[1], names[4]] and ids == {"a1", "c1"}  # their image ids: released
    assert remove_uris(str(before), uris, {"vsd.operation": "prune"})[1] == 2
    current = sorted(r["row_id"] for r in vsd.read(str(out)).to_pylist())
    assert current == sorted(r["row_id"] for r in vsd.read(str(before)).to_pylist())
    assert current == ["a0-p0", "b0-p0", "b1-p0", "c0-p0"]


def test_a_moved_file_and_a_moved_folder_keep_one_current_row_under_the_new_path(
    ray_local, tmp_path, annotate_config
):
    """A rename is a deletion plus a new file with known content: the prune takes the old path's
    row out, so the new path must be annotated -- not skipped as "content already written"."""
    folder, names = photos(tmp_path, 4)
    sub = os.path.join(folder, "old")
    os.mkdir(sub)
    for name in names[2:]:
        shutil.move(name, os.path.join(sub, os.path.basename(name)))
    out = str(tmp_path / "out")
    run_annotation(annotate_config(folder, out), engine_factory=make_color_engine)
    assert len(vsd.read(out)) == 4
    moved = os.path.join(folder, "renamed.png")
    os.rename(names[0], moved)  # one file renamed
    os.rename(sub, os.path.join(folder, "new"))  # a folder of two moved
    night2 = run_annotation(
        annotate_config(folder, out, "run_date=2026-11-27"), engine_factory=make_color_engine
    )
    now = sorted(r["source_uri"] for r in vsd.read(out).to_pylist())
    expect = sorted([moved, names[1]] + [os.path.join(folder, "new", os.path.basename(n)) for n in names[2:]])
    assert now == expect and night2.counts["images"] == 3
    assert not released.load(Output(out).released)  # spent by night 2's finish: the images have rows again
    shutil.copy(moved, os.path.join(folder, "copy.png"))  # a copy of an annotated image: skipped
    night3 = run_annotation(
        annotate_config(folder, out, "run_date=2026-11-28"), engine_factory=make_color_engine
    )
    assert (
        night3.counts["images"] == 0 and sorted(r["source_uri"] for r in vsd.read(out).to_pylist()) == expect
    )
    os.rename(moved, os.path.join(folder, "again.png"))  # moved a second time
    run_annotation(annotate_config(folder, out, "run_date=2026-11-29"), engine_factory=make_color_engine)
    assert os.path.join(folder, "again.png") in {r["source_uri"] for r in vsd.read(out).to_pylist()}
    assert len(vsd.read(out)) == 4
