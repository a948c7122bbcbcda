"""Input folders that fight back: links out, link loops, dangling links, special files.

Every file-like entry comes out once (as a row whose read says why it failed), a directory link
is entered only when asked and only under an allowed root, and a loop never multiplies rows."""

from __future__ import annotations

import os
import time

from tests.corpus.test_sync import shard_rows
from tests.fixtures.inputs import HOSTILE_DIR_LINKS, HOSTILE_ENTRIES
from vsd.annotate.stages.read import ReadError, read_bytes
from vsd.corpus import Corpus, sync


def _read_reason(uri: str, roots: list[str]) -> str:
    try:
        read_bytes(uri, roots, 1 << 20, attempts=1)
    except ReadError as exc:
        return exc.reason
    return "ok"


EXPECTED = HOSTILE_ENTRIES


def test_directory_links_are_not_followed_and_every_entry_is_one_row(hostile_folder, tmp_path):
    images = hostile_folder["images"]
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    started = time.monotonic()
    report = sync(corpus, str(images))
    assert time.monotonic() - started < 10
    rows = shard_rows(corpus)
    got = {os.path.relpath(r["uri"], images): r for r in rows}
    assert sorted(got) == sorted(EXPECTED), sorted(got)  # 8 rows, not 526: no loop, nothing from outside
    assert not any("secret-name" in r["uri"] or r["size"] == 4242 for r in rows)
    reasons = {name: _read_reason(r["uri"], corpus.roots) for name, r in got.items()}
    assert reasons == EXPECTED
    problems = "\n".join(report.problems)
    for link in HOSTILE_DIR_LINKS:
        assert f"{images}/{link}: a link to a directory: not followed" in problems, problems
    assert len(report.problems) == 4
    assert sync(corpus, str(images)).new == 0  # the unreadable rows are stable entries: sharded once


def test_followed_directory_links_stay_under_the_roots_and_each_folder_is_walked_once(
    hostile_folder, tmp_path
):
    images, outside = hostile_folder["images"], hostile_folder["outside"]
    hidden = images / ".cache"
    hidden.mkdir()
    (hidden / "c.png").write_bytes(b"ccc")
    os.symlink(hidden, images / "visible")  # reachable only through the link
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    report = sync(corpus, str(images), follow_dir_links=True)
    got = sorted(os.path.relpath(r["uri"], images) for r in shard_rows(corpus))
    assert got == sorted([*EXPECTED, "visible/c.png"])  # alias/, loop/, sub/up/ add nothing
    problems = "\n".join(report.problems)
    assert "out-dir: directory link to" in problems and "outside the input folder" in problems
    for link in ("loop", "alias", "sub/up"):
        assert f"{images}/{link}: a link to a directory already listed" in problems, problems
    # With the outside folder allowed, its link is entered, recorded as a root and readable.
    corpus2 = Corpus.open_or_create(str(tmp_path / "corpus2"))
    sync(corpus2, str(images), follow_dir_links=True, allowed_roots=[str(outside)])
    rows = {os.path.relpath(r["uri"], images): r for r in shard_rows(corpus2)}
    assert rows["out-dir/secret-name-4242.png"]["size"] == 4242
    assert _read_reason(rows["out-dir/secret-name-4242.png"]["uri"], corpus2.roots) == "ok"
    assert str(outside) in corpus2.roots


def test_three_self_links_list_in_a_moment(tmp_path):
    """The issue's worst case: three self-links listed for 90 s+ at 680 MB."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(16):
        (images / f"{i:02d}.png").write_bytes(bytes([i]))
    for name in ("l1", "l2", "l3"):
        os.symlink(".", images / name)
    for follow in (False, True):
        started = time.monotonic()
        report = sync(
            Corpus.open_or_create(str(tmp_path / f"c{follow}")), str(images), follow_dir_links=follow
        )
        assert time.monotonic() - started < 5 and report.listed == 16 and len(report.problems) == 3


def test_a_name_that_is_not_utf8_is_a_problem_line_printed_escaped(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "ok.png").write_bytes(b"o")
    os.mkdir(os.fsencode(images) + b"/caf\xe9")  # a latin-1 folder name: no Parquet string holds it
    with open(os.fsencode(images) + b"/caf\xe9/y.png", "wb") as f:
        f.write(b"y")
    with open(os.fsencode(images) + b"/\xff.png", "wb") as f:
        f.write(b"z")
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    report = sync(corpus, str(images))
    assert [os.path.basename(r["uri"]) for r in shard_rows(corpus)] == ["ok.png"]
    problems = "\n".join(report.problems)
    assert "caf\\udce9: the name is not UTF-8" in problems  # escaped, never the raw byte
    assert "\\udcff.png: the name is not UTF-8" in problems and len(report.problems) == 2


def test_folders_that_cannot_be_listed_are_problem_lines(tmp_path):
    """A tree deeper than PATH_MAX (made with dir_fd, as an unpacked archive can be): the folders
    past the limit are one problem line each, the rest is listed."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "ok.png").write_bytes(b"o")
    fd = os.open(images, os.O_RDONLY)
    try:
        for _ in range(20):  # 20 x 251 characters > 4096
            os.mkdir("d" * 250, dir_fd=fd)
            fd, old = os.open("d" * 250, os.O_RDONLY, dir_fd=fd), fd
            os.close(old)
        with open(os.open("deep.png", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "wb") as f:
            f.write(b"deep")
    finally:
        os.close(fd)
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    started = time.monotonic()
    report = sync(corpus, str(images))
    assert time.monotonic() - started < 5
    assert [os.path.basename(r["uri"]) for r in shard_rows(corpus)] == ["ok.png"]
    [problem] = report.problems
    assert "cannot list (ENAMETOOLONG)" in problem and len(problem) < 400
