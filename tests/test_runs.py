"""`vsd runs`: one line per run of a real two-night output; --fail-if gates on the latest run."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.annotate import GOOD_PAIR, build_corpus
from tests.fixtures.history import NIGHTS, annotate
from vsd import storage
from vsd.cli import main
from vsd.runs import EXIT_THRESHOLD, crossed, night_of, parse_threshold, repaired_rows


def test_each_night_is_a_line_and_a_jump_in_errors_fails_the_gate(two_nights, capsys):
    out = two_nights.output
    assert main(["runs", out]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["run_date", "run_id", "images", "ok"]
    assert [line.split()[0] for line in lines[1:]] == list(NIGHTS)
    assert lines[1].split()[2:4] == ["4", "4"] and lines[2].split()[2:4] == [str(3 + 4 + 2), str(3 + 2)]

    assert main(["runs", out, "--last", "1"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["run_date", NIGHTS[1]]
    assert main(["runs", out, "--json"]) == 0
    first, second = json.loads(capsys.readouterr().out)
    assert (first["errors"], first["error_share"]) == (0, 0.0)
    assert second["errors"] == two_nights.errors_night2 and second["errors_by_reason"] == {
        "decode_error": 1,
        "empty_file": 1,
        "not_an_image": 2,
    }
    assert second["error_share"] == round(4 / 9, 4) and second["model"] == "tiny:llava"
    assert second["images_per_s"] > 0 and second["deferred"] == 0

    # The nightly gate: the latest night crossed one threshold of three -> one line, exit 3.
    code = main(
        ["runs", out, "--fail-if", "error_share>0.05", "--fail-if", "deferred>0", "--fail-if", "ok<1"]
    )
    captured = capsys.readouterr()
    assert code == EXIT_THRESHOLD == 3
    assert captured.err.splitlines() == [
        f"vsd runs: threshold crossed: error_share=0.4444 > 0.05 (run {second['run_id']}, run_date {NIGHTS[1]})"
    ]
    assert main(["runs", out, "--fail-if", "error_share >= 0.6", "--fail-if", "unaccounted>0"]) == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fail-if", "eror_share>0.05"], "unknown metric 'eror_share'"),
        (["--fail-if", "error_share=>0.05"], "expected METRIC OP NUMBER"),
        (["--fail-if", "error_share>"], "expected METRIC OP NUMBER"),
        (["--last", "0"], "--last 0: must be at least 1"),
    ],
)
def test_a_bad_threshold_is_a_usage_error_before_any_read(tmp_path, capsys, args, message):
    assert main(["runs", str(tmp_path / "missing"), *args]) == 2
    assert message in capsys.readouterr().err


def test_an_output_without_run_records_is_one_error_line(tmp_path, capsys):
    assert main(["runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vsd: error: no run records under") and len(err.splitlines()) == 1
    storage.write_text(
        str(tmp_path / "__vsd" / "runs" / "cut.json"), '{"run_id": "cut", "coun'
    )  # half a file
    assert main(["runs", str(tmp_path)]) == 2
    assert "vsd: error: run record " in capsys.readouterr().err


def test_thresholds_and_repaired_rows_from_a_record():
    assert parse_threshold(" repaired_share >= 1e-1 ") == ("repaired_share", ">=", 0.1)
    # A row repaired in task 2 and task 3 is counted under both kinds: never summed.
    assert repaired_rows({"repaired:task2": 15, "repaired:task3": 12, "not_repaired": 3}) == 15
    assert repaired_rows({"repaired": 20, "repaired:task2": 15}) == 20
    # A rerun that found nothing new: no speed to judge (a speed gate must not fire), shares are 0.
    idle = {
        "run_id": "r",
        "run_date": "d",
        "counts": {"images": 0, "rows": 0},
        "timings": {"images_per_s": 0.0},
    }
    night = night_of(idle)
    assert night.error_share == 0.0 and night.images_per_s is None
    assert crossed(night, [parse_threshold("images_per_s<1"), parse_threshold("rows==0")]) == [
        "vsd runs: threshold crossed: rows=0 == 0 (run r, run_date d)"
    ]
    busy = night_of({**idle, "counts": {"images": 5, "rows": 5}, "timings": {"images_per_s": 0.5}})
    assert crossed(busy, [parse_threshold("images_per_s<1")]) == [
        "vsd runs: threshold crossed: images_per_s=0.5 < 1 (run r, run_date d)"
    ]


def test_runs_and_show_on_a_real_s3_output(ray_local, tmp_path, s3_bucket, capsys):
    """`vsd annotate` from S3 to S3 (moto): `vsd runs` gates on the records there, `vsd show`
    reads the rows and the images there and writes the page to a bucket (a static site)."""
    local = str(tmp_path / "corpus")
    build_corpus(local, 3, seed=3)
    storage.write_bytes(storage.join(local, "images", "notes.png"), b"just some text, not pixels\n")
    lines = storage.read_text(storage.join(local, "manifest.jsonl"))
    lines += json.dumps({"image": storage.join(local, "images", "notes.png"), "pairs": [GOOD_PAIR]}) + "\n"
    for uri in storage.list_files(storage.join(local, "images")):
        storage.write_bytes(f"{s3_bucket}/corpus" + uri[len(local) :], storage.read_bytes(uri))
    storage.write_text(
        f"{s3_bucket}/corpus/manifest.jsonl", lines.replace(local + "/", f"{s3_bucket}/corpus/")
    )
    remote = f"{s3_bucket}/annotations"
    annotate(f"{s3_bucket}/corpus", remote, NIGHTS[0])
    capsys.readouterr()

    assert main(["runs", remote, "--fail-if", "error_share>0.05"]) == EXIT_THRESHOLD
    captured = capsys.readouterr()
    assert captured.out.count("tiny:llava") == 1 and "error_share=0.25 > 0.05" in captured.err

    assert main(["show", remote, "--out", f"{s3_bucket}/site"]) == 0
    page = storage.read_text(f"{s3_bucket}/site/index.html")
    assert page.count('<figure class="row') == 4 and page.count('<img src="data:image/jpeg;base64,') == 3
    assert (
        f"{s3_bucket}/corpus/images/scene-3-00000.png" in page
        and "image not shown: not an image format Pillow reads" in page
    )
