"""Walking a local input folder: every entry once, never out of the folder, never without end.

Why not ``os.walk`` or Arrow's recursive selector: both follow a link to a directory, so a link
to ``/home`` lists files from outside the input (their names and sizes land in the shards) and a
``loop -> .`` link is walked until the kernel's ELOOP limit, 40 levels deep (16 files became 526
rows; three such links listed for minutes). And both drop what they cannot stat, so a dangling or
looping link never got its row.

The rules here:

* a link to a directory is not entered unless ``follow_dir_links`` is set; then only if its target
  lies under an allowed root (the input folder, ``input.allowed_roots``: the root check the read
  stage applies to file links), and a directory (by ``st_dev``, ``st_ino``) is walked at most once
  -- real directories first, so files are named by their real paths where they have one;
* every file-like entry -- a regular file, a link to one, a dangling or looping link, a FIFO, a
  socket, a device -- is an `Entry` (a file link out of the roots without its target's size or
  time, so nothing about an outside file lands in a shard): the read stage opens it and turns what it cannot read into
  that row's error row (``missing_file``, ``link_loop``, ``not_a_file``, ``outside_root``);
* what cannot carry a row (a directory that cannot be listed, a link not followed, a name that is
  not UTF-8) is one problem line, counted in the sync report.

The walk is iterative (a stack, no recursion) and holds one directory's entries and the set of
walked directories, never the whole listing.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from vsd.text import printable


@dataclass(frozen=True)
class Entry:
    """One file-like entry: its path (as listed, not resolved), size and version (None/lstat when
    its target cannot be stat'ed: the read stage says why)."""

    path: str
    size: int | None
    mtime_ns: int


def _utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:  # a byte that is not UTF-8 in a file name (surrogate-escaped)
        return False


def _inside(path: str, roots_real: list[str]) -> bool:
    real = os.path.realpath(path)
    return any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots_real)


def _why(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def walk(
    root: str, problems: list[str], follow_dir_links: bool = False, allowed_roots: list[str] | tuple = ()
) -> Iterator[Entry]:
    """The file-like entries below the local folder ``root`` (hidden names skipped), in sorted
    order per directory; see the module docstring for links and for what lands on ``problems``.
    ``allowed_roots``: local folders besides ``root`` that a followed directory link may lead into."""
    root = root.rstrip("/") or "/"
    roots_real = [os.path.realpath(r) for r in (root, *allowed_roots) if not str(r).startswith("s3://")]
    try:
        st = os.stat(root)
    except OSError as exc:
        problems.append(f"{printable(root)}: cannot list ({_why(exc)})")
        return
    walked = {(st.st_dev, st.st_ino)}
    links: list[str] = []  # directory links, entered after every real directory is walked
    stack = [root]
    while stack or links:
        if not stack:
            link = links.pop(0)
            try:
                target = os.stat(link)
            except OSError as exc:  # gone or turned into a loop since it was seen
                problems.append(f"{printable(link)}: directory link not followed ({_why(exc)})")
                continue
            if not _inside(link, roots_real):
                problems.append(
                    f"{printable(link)}: directory link to {printable(os.path.realpath(link))} is outside "
                    "the input folder and input.allowed_roots: not followed"
                )
                continue
            if (target.st_dev, target.st_ino) in walked:  # a loop, or a folder already listed by its own name
                problems.append(f"{printable(link)}: a link to a directory already listed: not entered again")
                continue
            walked.add((target.st_dev, target.st_ino))
            stack.append(link)
            continue
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            problems.append(
                f"{printable(folder)}: cannot list ({_why(exc)}): its files are not in the corpus"
            )
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden files (.DS_Store, editor swap files) are not corpus images
            path = entry.path
            if not _utf8(path):
                problems.append(f"{printable(path)}: the name is not UTF-8: skipped (rename it)")
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError as exc:  # a path longer than the kernel takes: its files cannot be read
                        problems.append(
                            f"{printable(path, 300)}: cannot list ({_why(exc)}): its files are skipped"
                        )
                        continue
                    if (st.st_dev, st.st_ino) not in walked:  # a bind mount can loop too
                        walked.add((st.st_dev, st.st_ino))
                        subdirs.append(path)
                    continue
                if entry.is_symlink():
                    try:
                        target = os.stat(path)
                    except OSError:  # dangling or looping: a row, so the read stage says which
                        yield Entry(path, None, entry.stat(follow_symlinks=False).st_mtime_ns)
                        continue
                    if stat.S_ISDIR(target.st_mode):
                        if follow_dir_links:
                            links.append(path)
                        else:
                            problems.append(
                                f"{printable(path)}: a link to a directory: not followed "
                                "(input.follow_dir_links: true enters links under the allowed roots)"
                            )
                        continue
                    if not _inside(path, roots_real):  # refused when read: tell nothing about the target
                        yield Entry(path, None, entry.stat(follow_symlinks=False).st_mtime_ns)
                        continue
                    yield Entry(
                        path, target.st_size if stat.S_ISREG(target.st_mode) else None, target.st_mtime_ns
                    )
                    continue
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # vanished between the listing and the stat: no longer an input
                continue
            except OSError:  # a name too long for the kernel, an I/O error: a row, the read stage says which
                yield Entry(path, None, 0)
                continue
            yield Entry(path, st.st_size if stat.S_ISREG(st.st_mode) else None, st.st_mtime_ns)
        stack.extend(reversed(subdirs))  # depth first, in name order
