"""`vsd show OUTPUT`: write a static HTML page of an output's rows (newest first), with filters."""

from __future__ import annotations

import argparse
import datetime as dt
import os

from vsd.errors import VSDError

DEFAULT_OUT = "vsd-show"  # below the current directory
DEFAULT_LIMIT = 200
PAGE = "index.html"
# Keys of --where; the value must equal the column, except: flag (a flag of that kind, e.g.
# repaired, or a longer prefix such as repaired:task2), error (the reason before ':').
WHERE_KEYS = (
    "status",
    "flag",
    "relation",
    "error",
    "refine_status",
    "consistent",
    "geometry_relation",
    "run_id",
    "run_date",
    "image_id",
    "model",
)
COLUMNS = [
    "row_id",
    "image_id",
    "source_uri",
    "pair_index",
    "subject",
    "object",
    "subject_box",
    "object_box",
    "relation",
    "description",
    "descriptions",
    "refined_description",
    "refined_descriptions",
    "refine_status",
    "geometry_relation",
    "consistent",
    "flags",
    "status",
    "error",
    "model",
    "run_id",
    "annotated_at",
    "run_date",
]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "show",
        help="write a static HTML page of an output's rows: images with boxes, relations, sentences, flags",
        description="Writes OUT/index.html: one self-contained page (images embedded, no server; open "
        "it from disk or serve it from a static bucket) with per row the image (subject box red, object "
        "green), relation and geometry check, raw and published sentences, flags and error; filters by "
        "status, flag, relation and text in the page; a header with the latest run's totals and one "
        "line per run. Rows are newest first.",
        epilog="Examples: vsd show s3://bucket/annotations --where status=error; vsd show out/ann "
        "--where flag=repaired --where relation=behind --limit 50. Repeating a key means any of the "
        "values; different keys must all hold. Exit status: 0 page written, 2 a usage error or an "
        "output without rows or run records, 1 storage unreachable.",
    )
    p.add_argument("output", metavar="OUTPUT", help="output root of `vsd annotate` (path or s3://)")
    p.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"folder to write {PAGE} to (path or s3://; default: ./{DEFAULT_OUT}/ in the current directory)",
    )
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"keep only matching rows; KEY one of {', '.join(WHERE_KEYS)} (flag=repaired: any flag "
        "of that kind; error=decode_error: that error reason; consistent=true|false)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"at most this many rows on the page (default {DEFAULT_LIMIT}; each embeds a thumbnail)",
    )
    p.set_defaults(func=run)


def parse_where(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise VSDError(f"--where {item!r}: expected KEY=VALUE, e.g. status=error")
        if key not in WHERE_KEYS:
            raise VSDError(f"--where {item!r}: unknown key {key!r} (one of: {', '.join(WHERE_KEYS)})")
        if key == "consistent" and value.strip().lower() not in ("true", "false"):
            raise VSDError(f"--where {item!r}: consistent is true or false")
        out.setdefault(key, []).append(value.strip())
    return out


def select(table, where: dict[str, list[str]], limit: int):
    """The matching rows, newest first (run date, then write time), at most ``limit``; and how
    many matched."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = pa.array(np.ones(table.num_rows, dtype=bool))
    for key, values in where.items():
        if key == "flag":
            flags = table.column("flags").combine_chunks()
            flat, parents = pc.list_flatten(flags), pc.list_parent_indices(flags)
            hit = pa.array(np.zeros(len(flat), dtype=bool))
            for v in values:
                for test in (pc.equal(flat, v), *(pc.starts_with(flat, v + s) for s in (":", " ", "."))):
                    hit = pc.or_kleene(hit, pc.fill_null(test, False))
            rows_hit = pc.unique(pc.filter(parents, hit))
            cond = pc.is_in(pa.array(np.arange(table.num_rows)), value_set=rows_hit.cast(pa.int64()))
        elif key == "error":
            reasons = pc.utf8_trim_whitespace(
                pc.list_element(pc.split_pattern(table.column("error"), ":", max_splits=1), 0)
            )
            cond = pc.is_in(reasons, value_set=pa.array(values))
        elif key == "consistent":
            cond = pc.is_in(table.column(key), value_set=pa.array([v.lower() == "true" for v in values]))
        else:
            cond = pc.is_in(table.column(key), value_set=pa.array(values))
        mask = pc.and_kleene(mask, pc.fill_null(cond, False))
    # Only the sort keys of the matching rows are copied, then the top k (not a full sort), then
    # just the shown rows: a page shows a few hundred of possibly millions of rows.
    keys = [("run_date", "descending"), ("annotated_at", "descending"), ("row_id", "ascending")]
    matching = pc.indices_nonzero(mask)
    if len(matching) == 0:
        return table.slice(0, 0), 0
    candidates = table.select([k for k, _ in keys]).take(matching)
    top = pc.select_k_unstable(candidates, k=min(limit, len(matching)), sort_keys=keys)
    return table.take(matching.take(top)), len(matching)


def run(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise VSDError(f"--limit {args.limit}: must be at least 1")
    where = parse_where(args.where)

    import vsd
    from vsd import storage
    from vsd.runs import night_of, read_run_records
    from vsd.show.page import render
    from vsd.show.thumbs import thumbnails

    root = args.output.rstrip("/")
    out = args.out if storage.is_s3(args.out) else os.path.abspath(args.out)
    inside = root if storage.is_s3(root) else os.path.abspath(root)
    if (out.rstrip("/") + "/").startswith(inside + "/"):
        raise VSDError(
            f"--out {args.out} is inside the output {root}: readers of the output would take the page "
            "for a data file; choose a folder outside it"
        )
    records = read_run_records(root)
    table = vsd.read(root, columns=COLUMNS)
    if table.num_rows == 0 and not records:
        raise VSDError(
            f"{root} holds no annotation rows and no run records: is it an output of `vsd annotate`?"
        )
    shown, matched = select(table, where, args.limit)
    rows = shown.to_pylist()
    thumbs = thumbnails([r["source_uri"] for r in rows])
    filters = " and ".join(f"{k}={'|'.join(v)}" for k, v in where.items()) or "no filter"
    summary = f"{len(rows)} of {matched} rows matching {filters} ({table.num_rows} rows in the output)"
    page = render(
        rows,
        thumbs,
        [night_of(r) for r in records],
        source=root,
        summary=summary,
        generated_at=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    target = storage.join(out, PAGE)
    storage.write_text(target, page)
    unreadable = sum(1 for t in thumbs.values() if t.data_url is None)
    print(summary)
    if unreadable:
        print(f"{unreadable} image(s) could not be shown (placeholders say why)")
    print(f"wrote {target}" if storage.is_s3(target) else f"wrote {target} (open file://{target})")
    return 0
