"""How well `vsd.relations.parse_relation` reads the annotated relation from real VSD captions.

Not a speed benchmark (no RATIO line): it prints, for VSDv1 and VSDv2 validation captions with the
triple's subject and object given, the share of captions where a relation is found, the share of
those agreeing with the annotation, the same split by how many of the two names the caption
mentions, and per annotated relation. The issue's targets: VSDv1 found >= 95%, agree >= 95%;
VSDv2 found >= 80%, agree >= 75%.

    .venv/bin/python bench/parser_agreement.py [--show N] [VSDv1.json VSDv2.json]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsd.evaluate.agreement import load_records, measure  # noqa: E402
from vsd.relations import RELATIONS  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "vsd"
TARGETS = {"VSDv1": (0.95, 0.95), "VSDv2": (0.80, 0.75)}


def _pct(num: int, den: int) -> str:
    return f"{100 * num / den:5.1f}%" if den else "    -"


def report(name: str, path: Path, show: int) -> None:
    t0 = time.perf_counter()
    a = measure(load_records(path))
    dt = time.perf_counter() - t0
    found_t, agree_t = TARGETS.get(name, (0, 0))
    print(f"== {name} ({path.name}): {a.captions} captions, parsed in {dt:.2f}s")
    print(
        f"found {_pct(a.found, a.captions)} (target {found_t:.0%})   "
        f"agree {_pct(a.agree, a.found)} of found (target {agree_t:.0%})"
    )
    for k, label in ((2, "both names"), (1, "one name"), (0, "neither name")):
        n, f, g = a.named[k]
        print(f"  captions naming {label:12s} {n:6d}  found {_pct(f, n)}  agree {_pct(g, f)}")
    print("  per annotated relation:      captions   found   agree")
    for rel in RELATIONS:
        n, f, g = a.per_relation[rel]
        print(f"    {rel:24s} {n:8d}  {_pct(f, n)}  {_pct(g, f)}")
    if show:
        print(f"  {show} random disagreements (caption | subject, annotated, object | parsed):")
        for cap, s, p, o, got in random.Random(0).sample(a.disagreements, min(show, len(a.disagreements))):
            print(f"    {cap.strip()!r} | {s}, {p}, {o} | {got}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path, help="VSDv1 and VSDv2 JSON (default: ../shared/data/vsd)")
    ap.add_argument("--show", type=int, default=0, help="print this many random disagreements per file")
    args = ap.parse_args()
    files = args.files or [DATA / "VSDv1_val.json", DATA / "VSDv2_val.json"]
    for name, path in zip(("VSDv1", "VSDv2"), files):
        report(name, path, args.show)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
