"""`vsd corpus sync|info`: make and grow a corpus of input shards (the nightly job reads these)."""

from __future__ import annotations

import argparse

from vsd.corpus.shards import DEFAULT_SHARD_ROWS


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "corpus",
        help="make or grow a corpus of immutable input shards from a folder, s3:// prefix or manifest",
        description="A corpus is a folder of Parquet shards (uri, size, version, image_id, pairs). `sync` adds "
        "shards only for rows not seen before, so a nightly `vsd annotate --input CORPUS` reads only "
        "what is new.",
    )
    sub = p.add_subparsers(dest="corpus_command", required=True)
    s = sub.add_parser("sync", help="add what SRC holds and CORPUS lacks as new shards")
    s.add_argument(
        "--from",
        dest="source",
        required=True,
        help="folder or s3:// prefix of images, a Parquet/JSONL/CSV manifest or listing (e.g. an S3 "
        "Inventory), or VSD JSON",
    )
    s.add_argument(
        "--to", dest="corpus", required=True, help="corpus root (local or s3://); created if missing"
    )
    s.add_argument("--format", default="auto", choices=["auto", "folder", "manifest", "vsd_json"])
    s.add_argument(
        "--image-dir", default="", help="VSD JSON: the images' folder; manifest: base of relative URIs"
    )
    s.add_argument("--vsd2", default="", help="VSD JSON: the matching VSDv2 file")
    s.add_argument(
        "--extensions", default="", help="folder: comma-separated extensions to take (default: every file)"
    )
    s.add_argument("--shard-rows", type=int, default=DEFAULT_SHARD_ROWS, help="rows per shard")
    s.add_argument(
        "--parallel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="list an s3:// prefix in Ray tasks, one per top-level entry (default on)",
    )
    s.add_argument(
        "--follow-dir-links",
        action="store_true",
        help="folder: enter links to directories inside the folder (each directory once; links out of "
        "the folder and loops are never followed); default: links to directories are reported, not entered",
    )
    s.add_argument(
        "--prune",
        choices=["auto", "on", "off"],
        default="auto",
        help="record the files the last sync listed and this one lacks, for each output to delete at "
        "its next run (auto: for a folder or prefix, not a manifest, which may list only new rows)",
    )
    s.add_argument(
        "--ray-address", help="Ray cluster for the parallel listing (default: RAY_ADDRESS or a local one)"
    )
    s.set_defaults(func=run_sync)
    i = sub.add_parser("info", help="shards, rows and sources of a corpus")
    i.add_argument("corpus", help="corpus root")
    i.set_defaults(func=run_info)


def run_sync(args: argparse.Namespace) -> int:
    from vsd import storage
    from vsd.config import ConfigError
    from vsd.corpus import Corpus, sync
    from vsd.text import printable

    if args.shard_rows < 1:
        raise ConfigError(f"--shard-rows: must be >= 1, got {args.shard_rows}")
    parallel = args.parallel and storage.is_s3(args.source)
    if parallel:
        from vsd.raycluster import connect
        from vsd.stop import install_after_ray_init

        install_after_ray_init()  # ray.init replaces the SIGTERM handler: ours goes back after it
        print(connect(args.ray_address))
    corpus = Corpus.open_or_create(args.corpus)
    extensions = [e.strip() for e in args.extensions.split(",") if e.strip()]
    report = sync(
        corpus,
        args.source,
        args.format,
        args.image_dir,
        args.vsd2,
        extensions,
        args.shard_rows,
        parallel=parallel,
        follow_dir_links=args.follow_dir_links,
        prune=args.prune,
    )
    for line in (report.repeated + report.problems)[:20]:
        print(f"skipped: {printable(line, 500)}")
    if report.repeats + len(report.problems) > 20:
        print(f"skipped: ... and {report.repeats + len(report.problems) - 20} more")
    print(
        f"{printable(args.source)}: {report.listed} listed, {report.new} new in {len(report.shards)} shard(s); "
        f"{corpus.root} now has {len(corpus.shards())} shard(s)"
        + (f" ({len(report.merged)} merged from small ones)" if report.merged else "")
        + (f"; {len(report.problems)} problem(s) skipped" if report.problems else "")
    )
    if report.listing is not None:
        gone = report.listing.gone
        print(
            f"deleted files: {report.listing.note}"
            if report.listing.note
            else f"deleted files: {gone} since the last sync (outputs remove their rows at their next run)"
            if gone is not None
            else "deleted files: this listing is the first one kept; the next sync compares with it"
        )
    return 0


def run_info(args: argparse.Namespace) -> int:
    from vsd.corpus import Corpus
    from vsd.text import printable

    corpus = Corpus.open(args.corpus)
    shards = corpus.shards()
    print(f"{printable(corpus.root)}: {len(shards)} shard(s), {sum(s.rows for s in shards)} row(s)")
    for source in corpus.meta.get("sources", []):
        roots = printable(", ".join(source["roots"]))
        print(f"  source {source['kind']}: {printable(source['uri'])} (reads under {roots})")
    return 0
