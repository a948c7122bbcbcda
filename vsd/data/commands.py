"""`vsd data synth` and `vsd data build`: the command-line face of the data layer."""

from __future__ import annotations

import argparse
import re

from vsd.errors import VSDError


def _size(text: str) -> int | tuple[int, int] | range:
    """``96`` (square), ``96x64`` (width x height) or ``64-128`` (each side drawn from the range)."""
    if m := re.fullmatch(r"(\d+)", text):
        return int(m[1])
    if m := re.fullmatch(r"(\d+)x(\d+)", text):
        return int(m[1]), int(m[2])
    if m := re.fullmatch(r"(\d+)-(\d+)", text):
        lo, hi = int(m[1]), int(m[2])
        if lo <= hi:
            return range(lo, hi + 1)
    raise argparse.ArgumentTypeError(f"size must be N, WxH or MIN-MAX, got {text!r}")


def add_parser(sub) -> None:
    data = sub.add_parser("data", help="VSD data: synthetic scenes and the instruction dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True)

    synth = data_sub.add_parser("synth", help="generate seeded synthetic VSD scenes (images + VSD JSON)")
    synth.add_argument("--n", type=int, required=True, help="number of scenes (relations in turn)")
    synth.add_argument("--out", required=True, help="output folder (local or s3://)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (same seed, same set)")
    synth.add_argument("--size", type=_size, default=96, help="image size: N, WxH or MIN-MAX (default 96)")
    synth.add_argument("--format", choices=["png", "jpg"], default="png", help="image format")
    synth.set_defaults(func=run_synth)

    build = data_sub.add_parser("build", help="build the 3-task instruction dataset from VSD JSON files")
    build.add_argument("--vsd1", help="VSDv1 JSON file (local or s3://)")
    build.add_argument("--vsd2", help="VSDv2 JSON file (local or s3://)")
    build.add_argument("--images", help="folder of the images named by img_id (local or s3://)")
    build.add_argument("--out", required=True, help="output folder (local or s3://)")
    build.add_argument("--seed", type=int, default=0, help="seed for picking task-3 captions")
    build.add_argument(
        "--strict", action="store_true", help="fail on the first bad record instead of skipping it"
    )
    build.add_argument("--split", default="train", help="split name written into every row")
    build.add_argument("--dataset", help="dataset name for the rows (default from the files)")
    build.set_defaults(func=run_build)


def run_synth(args: argparse.Namespace) -> int:
    from vsd.data.synthetic import generate

    if args.n < 1:
        raise VSDError(f"--n must be at least 1, got {args.n}")
    try:
        result = generate(args.n, args.out, seed=args.seed, size=args.size, image_format=args.format)
    except ValueError as exc:
        raise VSDError(str(exc)) from None
    except OSError as exc:
        raise VSDError(
            f"{args.out}: cannot write: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        ) from None
    per = ", ".join(f"{r}: {n}" for r, n in result.per_relation.items())
    print(f"wrote {result.scenes} scenes to {result.out_dir} ({per})")
    print(f"  {result.vsd1}\n  {result.vsd2}\n  {result.images}/")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from vsd.data.instructions import build
    from vsd.data.vsd_json import read_vsd

    if not args.vsd1 and not args.vsd2:
        raise VSDError("give --vsd1 and/or --vsd2")
    read = read_vsd(args.vsd1, args.vsd2, images=args.images, strict=args.strict, dataset=args.dataset)
    stats = build(read.records, args.out, seed=args.seed, split=args.split, problems=read.problems)
    print(summary(stats, args.out))
    if args.images and read.missing_images:
        print(
            f"  {len(read.missing_images)} records have no readable image in {args.images} "
            f"(e.g. {read.missing_images[0]}): their rows are text-only"
        )
    return 0


def summary(stats: dict, out: str) -> str:
    """A few lines: rows written, per task, and what was skipped and why."""
    lines = [
        f"wrote {stats['rows']} rows ({stats['records']} triples x 3 tasks) to {out}",
        f"  images: {stats['images']['written']} visual-prompt images, "
        f"{stats['images']['rows_without_image']} rows without image",
    ]
    skipped = stats["skipped"]
    if skipped["total"]:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in skipped["by_reason"].items())
        lines.append(f"  skipped {skipped['total']} ({reasons}); details in stats.json")
        lines.extend(f"    {p}" for p in skipped["problems"][:5])
    else:
        lines.append("  skipped 0")
    return "\n".join(lines)
