"""`vsd ask`: what the model says about one pair in one image, in seconds, without Ray.

    vsd ask --model out/model photo.jpg --subject "red cup" --subject-box 0.42,0.31,0.55,0.48 \\
        --object table --object-box 0.1,0.45,0.95,0.98 [--task 1] [--adapter DIR] [--json]

Prints each task's answer, the relation the boxes' geometry decides and whether task 1 agrees.
The config is an annotation config (``--config`` file or name, ``key=value`` overrides), resolved
against the model's record like `vsd annotate`'s; the engine is ``hf`` on the CPU unless told.
"""

from __future__ import annotations

import argparse
import json
import sys

from vsd.named_configs import known_names

TASK_NAMES = {1: "relation", 2: "description", 3: "descriptions"}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "ask",
        help="answer the 3 VSD tasks for one image and one subject/object pair (in-process, no Ray)",
        description="Runs annotation's own preprocess (boxes drawn: subject red, object green), "
        "prompts, engine and verify stage on one image. Boxes are x0,y0,x1,y1: fractions 0..1 or, "
        "when all four are whole numbers and one is above 1, pixels of the upright image.",
    )
    p.add_argument("image", help="image file (local path or s3:// URI)")
    p.add_argument("--model", help="model: dir, s3:// prefix, hub id or tiny:llava (default: engine.model)")
    p.add_argument("--adapter", help="PEFT adapter dir served on top of --model")
    p.add_argument("--subject", required=True, help="the subject's name, e.g. 'red cup'")
    p.add_argument("--subject-box", required=True, help="x0,y0,x1,y1 (0..1, or pixels)")
    p.add_argument("--object", required=True, help="the object's name, e.g. table")
    p.add_argument("--object-box", required=True, help="x0,y0,x1,y1 (0..1, or pixels)")
    p.add_argument(
        "--task",
        type=int,
        choices=[1, 2, 3],
        action="append",
        help="ask only this task (repeatable; default: all three)",
    )
    p.add_argument("--device", default="cpu", help="engine device: cpu (default), cuda, cuda:N, auto")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument(
        "--config",
        help="annotate config: a YAML file or a shipped name (" + ", ".join(known_names("annotate")) + "); "
        "its engine and preprocess sections apply",
    )
    # Overrides are an option here, not trailing words as in `vsd annotate`: after the IMAGE
    # positional, argparse would take no more positionals once an option came between them.
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="KEY=VALUE",
        help="a dotted config override, repeatable (e.g. --set engine.dtype=bfloat16; the fields: "
        "vsd annotate --help-config)",
    )
    p.set_defaults(func=run)


def load_config(args: argparse.Namespace):
    """An annotation config for this question: --config, then the flags, then the overrides,
    then the model's record (`vsd.annotate.model_record`); the engine is always hf here."""
    from vsd.annotate.config import load_config as load_annotate_config
    from vsd.annotate.model_record import resolve_against_model
    from vsd.named_configs import resolve_config

    path = resolve_config(args.config, "annotate")
    overrides = ["engine.kind=hf", f"engine.device={args.device}"]
    if args.model:
        overrides.append(f"engine.model={args.model}")
    if args.adapter:
        overrides.append(f"engine.adapter={args.adapter}")
    overrides += list(args.overrides or [])
    return resolve_against_model(load_annotate_config(path, overrides), path, overrides)


def run(args: argparse.Namespace) -> int:
    from vsd.ask.core import Question, answer

    question = Question(
        image=args.image,
        subject=args.subject,
        subject_box=args.subject_box,
        object=args.object,
        object_box=args.object_box,
        tasks=sorted(set(args.task or [1, 2, 3])),
    )
    cfg = load_config(args)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights: 100%" is noise around a 5-line answer
    found = answer(question, cfg)
    print(json.dumps(found, indent=2) if args.json else format_answer(found))
    sys.stdout.flush()
    return 0


def _box(box: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in box) + "]"


def verdict(found: dict) -> str:
    """What the verify stage's geometry check says about task 1 (lenient: only a clear
    contradiction is one; ``next to`` is compatible with a side, ``on`` with ``above``)."""
    agrees, relation, geometry = found["agrees_with_geometry"], found["relation"], found["geometry_relation"]
    if agrees is None:
        return ""
    if not agrees:
        return f'; task 1 "{relation}" CONTRADICTS it (flag geometry_contradicts:task1)'
    if relation == geometry:
        return "; task 1 agrees"
    if geometry is None:
        return f'; task 1 "{relation}" is not ruled out'
    return f'; task 1 "{relation}" is compatible with it'


def format_answer(found: dict) -> str:
    """The human form: what was asked, each answer, then the geometry check and the flags."""
    units = found["box_units"]
    unit = "" if set(units.values()) == {"normalised"} else " (boxes given in pixels, shown normalised)"
    lines = [
        f"image    {found['image']} ({found['width']}x{found['height']}){unit}",
        f"subject  {found['subject']} {_box(found['subject_box'])} (red)",
        f"object   {found['object']} {_box(found['object_box'])} (green)",
        f"model    {found['model']}{' + ' + found['adapter'] if found['adapter'] else ''} "
        f"({found['engine']['kind']} on {found['engine']['device']}, {found['input']['image_size']} px, "
        f"visual prompt {'on' if found['input']['visual_prompt'] else 'off'})",
        "",
    ]
    if 1 in found["tasks"]:
        scores = found["relation_scores"] or {}
        best = sorted(scores.items(), key=lambda kv: -kv[1])[:3]
        shown = ", ".join(f"{r} {s:.2f}" for r, s in best)
        lines.append(
            f"1 relation      {found['relation']}" + (f"   (log-likelihood: {shown})" if shown else "")
        )
    if 2 in found["tasks"]:
        lines.append(f"2 description   {found['description']}")
        if found["refined_description"] and found["refined_description"] != found["description"]:
            lines.append(f"  repaired      {found['refined_description']}")
    if 3 in found["tasks"]:
        sentences = found["descriptions"] or [""]
        lines.append(f"3 descriptions  {sentences[0]}")
        lines += [f"                {s}" for s in sentences[1:]]
        refined = found["refined_descriptions"]
        if refined and refined != found["descriptions"]:
            lines += [f"  repaired      {s}" for s in refined]
    geometry = found["geometry_relation"] or "undecided (the boxes allow several relations)"
    lines += ["", f"geometry  {geometry}{verdict(found)}"]
    lines.append(f"flags     {', '.join(found['flags']) if found['flags'] else 'none'}")
    secs = found["seconds"]
    lines.append(
        f"time      {sum(secs.values()):.1f} s (load {secs['load']:.1f} s, answer {secs['answer']:.1f} s)"
    )
    return "\n".join(lines)
