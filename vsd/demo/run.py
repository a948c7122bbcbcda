"""`vsd demo`: the whole system, offline, on the embedded default (local Ray, local files, tiny LLaVA).

It runs the production code paths with the demo's configs (package data, ``vsd/assets/demo/``: a
plain ``TrainConfig`` and ``AnnotateConfig``, so a wheel install runs the demo too): synthetic
train and held-out scenes ▸ 3-task instruction data ▸ LoRA fine-tune of the committed tiny
pretrained base on Ray Train (2 workers, DeepSpeed) ▸ merged export ▸ Ray Data annotation of the
held-out corpus ▸ refinement ▸ Parquet ▸ evaluation. ``<out>/report.json`` carries
``relation_accuracy``, the held-out task-1 accuracy, so a user (and CI) can see that the model
learned rather than guessed (chance is 1/9).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

from vsd import backends
from vsd.demo import raw as demo_raw
from vsd.errors import VSDError

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CONFIGS = ASSETS / "demo"
BASE_MODEL = ASSETS / "tiny-vsd-base"
DEFAULT_TRAIN_SCENES = 600  # 3 instructions per scene; more = better accuracy, longer data build
IMAGE_SIZE = 64  # the base's vision input (64 px, patch 8: 64 image tokens)
# --engine: a backend with an image entry point (vsd/backends); the default is the one the demo's
# annotate config names, the others are selected (on CPU) by the overrides their backend declares.
DEFAULT_ENGINE = "hf"
ENGINE_OVERRIDES = {
    name: [] if name == DEFAULT_ENGINE else [f"engine.kind={name}", *b.cpu_overrides]
    for name, b in backends.engines().items()
}
#: What the demo promises at its default size (headline key, at least | at most, bound): met by the
#: default run and asserted by tests/test_demo.py. Description figures count what the model wrote,
#: so filling in templates cannot meet them.
PROMISES = {
    "relation_accuracy": ("at least", 0.95),
    "task3_true_sentences_overwritten": ("at most", 0),
    "task2_true_sentences_overwritten": ("at most", 0),
}
#: Issue #26's description targets, not yet reached by the demo's 150-step fine-tune (see
#: docs/benchmarks.md): reported with each run, so the gap is visible, and promoted to PROMISES
#: once a default run meets them.
TARGETS = {
    "task3_model_wrote_three_share": ("at least", 0.90),
    # every task-3 sentence the model generated (not only those repair kept: that share is selected)
    "task3_true_relation_share": ("at least", 0.90),
    "task3_template_share": ("at most", 0.10),
}


def promises(head: dict, bounds: dict | None = None) -> dict:
    """Each promise (or target, with ``bounds=TARGETS``) with the value this run reached and whether
    it is met (a missing value is not)."""
    out = {}
    for key, (kind, bound) in (PROMISES if bounds is None else bounds).items():
        value = head.get(key)
        met = value is not None and (value >= bound if kind == "at least" else value <= bound)
        out[key] = {"target": f"{kind} {bound}", "value": value, "met": met}
    return out


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run data ▸ train ▸ export ▸ annotate ▸ evaluate end to end, offline, on a tiny model",
        description="Generates synthetic scenes, fine-tunes the tiny pretrained base with LoRA on Ray "
        "Train + DeepSpeed, annotates held-out scenes with Ray Data and evaluates them.",
    )
    p.add_argument("--out", default="out/demo", help="output folder (local path)")
    p.add_argument("--train-scenes", type=int, default=DEFAULT_TRAIN_SCENES, help="synthetic training scenes")
    p.add_argument("--heldout-scenes", type=int, default=90, help="synthetic held-out scenes to annotate")
    p.add_argument(
        "--raw-scenes",
        type=int,
        default=90,
        help="held-out scenes given without boxes, for the tiny detector and the propose stage (0: skip)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the training scenes (held-out: seed + 1000)")
    p.add_argument(
        "--train-config", default=str(CONFIGS / "train.yaml"), help="TrainConfig YAML of the fine-tune"
    )
    p.add_argument("--annotate-config", default=str(CONFIGS / "annotate.yaml"), help="AnnotateConfig YAML")
    p.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the local Ray cluster")
    p.add_argument(
        "--engine",
        default=DEFAULT_ENGINE,
        choices=list(ENGINE_OVERRIDES),
        help="annotation engine: hf (transformers) or sglang (the real sglang.Engine on CPU, needs "
        ".venv-sglang from `make test-sglang`); the export's layout follows",
    )
    p.add_argument("overrides", nargs="*", help="train config overrides, e.g. optim.max_steps=100")
    p.set_defaults(func=run)


class Stopwatch:
    """Wall time per stage, printed as the demo goes and kept for the report."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.start = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str):
        print(f"\n== {name} ==", flush=True)
        t0 = time.perf_counter()
        yield
        self.times[name] = round(time.perf_counter() - t0, 1)
        print(f"-- {name}: {self.times[name]:.1f} s", flush=True)

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self.start, 1)


def make_data(out: Path, n: int, seed: int, split: str, size: int) -> tuple[Path, Path]:
    """Synthetic scenes + their instruction set; returns (scenes folder, instructions folder)."""
    from vsd.data import instructions, synthetic
    from vsd.data.vsd_json import read_vsd

    scenes = synthetic.generate(n, str(out / f"{split}-scenes"), seed=seed, size=size)
    read = read_vsd(scenes.vsd1, scenes.vsd2, images=str(Path(scenes.out_dir) / "images"))
    if not read.records:
        raise VSDError(f"demo: no valid synthetic records in {scenes.out_dir}")
    built = out / f"{split}-instructions"
    stats = instructions.build(read.records, str(built), seed=seed, split=split, problems=read.problems)
    print(f"{split}: {n} scenes -> {stats.get('rows', '?')} instruction rows in {built}")
    if split == "heldout":  # references in frames no writer of the system uses (see the module)
        from vsd.data.reference_captions import rewrite_references

        rewrite_references(built, seed)
    return Path(scenes.out_dir), built


def train_adapter(cfg_path: str, overrides: list[str], data_uri: Path, run_uri: Path):
    from vsd import config as vconfig
    from vsd.train.config import TrainConfig
    from vsd.train.driver import train

    cfg = vconfig.load(
        TrainConfig, cfg_path, [f"model.base={BASE_MODEL}", f"data.uri={data_uri}", *overrides]
    )
    result = train(cfg, str(run_uri))
    if result.error or not result.checkpoint:
        raise VSDError(f"demo: training failed: {result.error or 'no checkpoint written'}")
    return result


def annotate(cfg_path: str, scenes: Path, model_dir: Path, output: Path, engine: str = DEFAULT_ENGINE):
    from vsd.annotate.config import load_config
    from vsd.annotate.pipeline import run_annotation

    cfg = load_config(
        cfg_path,
        [
            f"input.uri={scenes / 'vsdv1.json'}",
            f"input.vsd2={scenes / 'vsdv2.json'}",
            f"input.image_dir={scenes / 'images'}",
            f"output={output}",
            f"engine.model={model_dir}",
            *ENGINE_OVERRIDES[engine],
        ],
    )
    return run_annotation(cfg)


def headline(report: dict) -> dict[str, float]:
    """The demo's headline numbers from the evaluation report: the model's raw output (``task2_…``),
    the published, refined text (``task2_refined_…``), the published sentences the model wrote
    (``task2_model_written_…``: what filling in cannot raise), who wrote the published sentences
    (``task<N>_sources``), plus what repair and truncation did."""
    out = {
        "relation_accuracy": report["relation_accuracy"],
        "task1_macro_f1": (report.get("task1") or {}).get("macro_f1"),
    }
    for task in (2, 3):
        for variant, tag in (("raw", ""), ("refined", "refined_")):
            block = (report.get(f"task{task}") or {}).get(variant) or {}
            captions = block.get("captions") or {}
            for name in ("Bleu_4", "METEOR", "CIDEr"):
                out[f"task{task}_{tag}{name}"] = captions.get(name)
            out[f"task{task}_{tag}true_relation_share"] = (block.get("relation_in_text") or {}).get(
                "agree_share"
            )
            if task == 3:
                out[f"task3_{tag}three_sentence_share"] = block.get("three_sentence_share")
                for key, value in (block.get("diversity") or {}).items():
                    if key != "answers":
                        out[f"task3_{tag}{key}"] = value
    for task in (2, 3):
        own = (report.get(f"task{task}") or {}).get("model_written") or {}
        for name in ("Bleu_4", "METEOR", "CIDEr"):
            out[f"task{task}_model_written_{name}"] = (own.get("captions") or {}).get(name)
        out[f"task{task}_model_written_true_relation_share"] = (own.get("relation_in_text") or {}).get(
            "agree_share"
        )
        prov = (report.get("provenance") or {}).get(f"task{task}") or {}
        out[f"task{task}_sources"] = prov.get("shares")
        out[f"task{task}_template_share"] = (prov.get("shares") or {}).get("template", 0.0) if prov else None
        out[f"task{task}_true_sentences_overwritten"] = (prov.get("overwritten_true") or {}).get("sentences")
    out["task3_model_wrote_three_share"] = ((report.get("task3") or {}).get("raw") or {}).get(
        "three_sentence_share"
    )
    out["description_flags"] = report.get("description_flags") or {}
    out["truncated_refined"] = out["description_flags"].get("truncated_refined")
    return out


def run(args: argparse.Namespace) -> int:
    import ray

    from vsd.evaluate.report import evaluate
    from vsd.model.export import merge_and_export

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not BASE_MODEL.joinpath("config.json").exists():
        raise VSDError(f"demo: the tiny pretrained base is missing at {BASE_MODEL}")
    for path in (args.train_config, args.annotate_config):
        if not Path(path).exists():
            raise VSDError(f"demo: config not found: {path}")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, single-user cluster
    watch = Stopwatch()

    with watch.stage("data"):
        from vsd import config as vconfig

        train_yaml = vconfig.load_yaml(args.train_config)
        n_train, size = args.train_scenes, IMAGE_SIZE
        _, train_data = make_data(out / "data", n_train, args.seed, "train", size)
        heldout_scenes, heldout_data = make_data(
            out / "data", args.heldout_scenes, args.seed + 1000, "heldout", size
        )

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(
            num_cpus=args.num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"]}},
        )
    try:
        with watch.stage("train (Ray Train + DeepSpeed, LoRA)"):
            cfg_path = _write_train_config(train_yaml, out)
            result = train_adapter(cfg_path, list(args.overrides), train_data, out / "train")
            print(f"adapter: {result.checkpoint}")
        with watch.stage("export (merge LoRA)"):
            model_dir = out / "model"
            merge_and_export(
                str(BASE_MODEL),
                str(Path(result.checkpoint) / "adapter"),
                str(model_dir),
                overwrite=True,
                layout=backends.BACKENDS[args.engine].layout,
            )
        with watch.stage(f"annotate (Ray Data, {args.engine} engine)"):
            run_result = annotate(
                args.annotate_config, heldout_scenes, model_dir, out / "annotations", args.engine
            )
        raw = None
        if args.raw_scenes:
            with watch.stage("raw corpus (propose ▸ annotate, no boxes given)"):
                raw = demo_raw.run_raw(
                    out / "raw",
                    args.raw_scenes,
                    args.seed + 1000,
                    args.annotate_config,
                    model_dir,
                    ENGINE_OVERRIDES[args.engine],
                )
    finally:
        if started_ray:
            ray.shutdown()

    with watch.stage("evaluate"):
        report = evaluate(
            str(out / "annotations"), str(heldout_data / "instructions.parquet"), str(out / "report")
        )

    from vsd.evaluate.commands import summary_lines

    head = headline(report)
    demo_report = {
        **head,
        "promises": promises(head),
        "meets_promises": all(p["met"] for p in promises(head).values()),
        "targets": promises(head, TARGETS),
        "chance": round(1 / 9, 4),
        "engine": args.engine,
        "train_scenes": n_train,
        "heldout_scenes": args.heldout_scenes,
        "annotation_counts": run_result.counts,
        "train_checkpoint": result.checkpoint,
        "seconds": {**watch.times, "total": watch.total},
        "evaluation_report": str(out / "report" / "report.json"),
        "raw": raw,
    }
    (out / "report.json").write_text(json.dumps(demo_report, indent=2, default=str))
    print("\nllava-vsd demo: held-out synthetic scenes (chance on task 1: 0.111)")
    for line in summary_lines(report):
        print(line)
    for line in demo_raw.summary_lines(raw) if raw else []:
        print(line)
    print("stage times (s): " + ", ".join(f"{k} {v}" for k, v in demo_report["seconds"].items()))
    print(f"held-out relation accuracy: {report['relation_accuracy']:.3f}")
    for kind in ("promises", "targets"):
        for key, p in demo_report[kind].items():
            print(f"{kind[:-1]} {key} {p['target']}: {p['value']} ({'met' if p['met'] else 'NOT met'})")
    print(
        f"report: {out / 'report' / 'report.md'}   parquet: {out / 'annotations'}   summary: {out / 'report.json'}"
    )
    return 0


def _write_train_config(data: dict, out: Path) -> str:
    """The demo's train config, written next to the outputs so the run can be reproduced with
    `vsd train --config <out>/train-config.yaml`."""
    import yaml

    target = out / "train-config.yaml"
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(target)
