"""`vsd annotate` on a folder that fights back (issue 25), on a real local Ray cluster with the tiny
model: every file-like entry comes out once -- annotated, an error row with its reason, or skipped
as the same bytes -- directory links are reported and not entered, nothing from outside leaks."""

from __future__ import annotations

import json

from tests.fixtures.annotate import read_rows
from tests.fixtures.infra import REPO
from tests.fixtures.inputs import HOSTILE_DIR_LINKS, HOSTILE_ENTRIES
from vsd.cli import main


def test_every_entry_of_a_hostile_folder_comes_out_once(ray_local, hostile_folder, tmp_path, capsys):
    images, out = hostile_folder["images"], str(tmp_path / "out")
    argv = [
        "annotate",
        "--config",
        str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"),
        "--input",
        str(images),
        "--output",
        out,
        "progress_bars=false",
        "run_date=2026-11-26",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err
    rows = read_rows(out)
    got = {r["source_uri"][len(str(images)) + 1 :]: r for r in rows}
    outcome = {k: "ok" if r["status"] == "ok" else r["error"].split(":")[0] for k, r in got.items()}
    # inside-link.png holds a.png's bytes: one image, one row (the other is skipped as a duplicate)
    want = {k: v for k, v in HOSTILE_ENTRIES.items() if k != "inside-link.png"}
    assert outcome == want or outcome == {
        **{k: v for k, v in want.items() if k != "a.png"},
        "inside-link.png": "ok",
    }
    assert len(rows) == len({r["row_id"] for r in rows}) == len(HOSTILE_ENTRIES) - 1
    assert "secret-name" not in json.dumps(rows, default=str)  # nothing from outside in any row
    for link in HOSTILE_DIR_LINKS:
        assert (
            f"source problem (skipped): {images}/{link}: a link to a directory: not followed" in printed.out
        )
    assert "duplicate_content: 1" in printed.out
    assert main(argv) == 0 and "nothing new" in capsys.readouterr().out  # the unreadable rows are final
