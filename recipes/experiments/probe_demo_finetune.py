#!/usr/bin/env python
"""Probe: how far does the demo's short LoRA fine-tune take the committed tiny base?

Simulates what `vsd demo` trains, on one process and without Ray/DeepSpeed, with the project's own
pieces: synthetic scenes (`vsd.data.synthetic.generate`, 64 px as `vsd.train.data.synthetic_dataset`
makes them) -> the 3-task instruction set (`vsd.data.instructions.build`) -> `InstructionDataset`
+ `LlavaCollator` -> LoRA (`vsd.model.lora.attach_lora`) -> the training step of `vsd.train.loop`
(`TorchStepper`, `run_step`, AdamW with warm-up + cosine). Then it measures held-out task-1
relation accuracy on scenes of another seed, two ways:

* constrained choice: the 9 relations scored by the log-likelihood of the answer (+ ``</s>``),
  the best one picked (what a relation classifier over the model would report);
* greedy generation parsed with `relations.normalize_relation` (what the annotate job reports).

With ``--describe N`` it also decodes task 3 on N held-out pairs with the annotate job's engine
(`HFEngine`, greedy, the token budget annotation would give: the trained answers' p99 x 1.25), once
free and once with the generate stage's line floor (``--min-lines``), and reports what issue #26 is
about: the share of answers with three sentences, how each answer ended (EOS after sentence k, or
the budget), and the share of the model's own sentences that state the true relation.

    python recipes/experiments/probe_demo_finetune.py --steps 150 --batch 8
    python recipes/experiments/probe_demo_finetune.py --scenes 600 --steps 150 --batch 16 --lr 2e-3 --describe 90
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

DEFAULT_BASE = os.path.join(os.path.dirname(__file__), "..", "..", "vsd", "assets", "tiny-vsd-base")


def instruction_set(n: int, seed: int, root: str, size: int = 64) -> str:
    """Scenes -> VSD files -> instruction set, as the demo builds it; returns the built folder."""
    from vsd.data.instructions import build
    from vsd.data.synthetic import generate
    from vsd.data.vsd_json import read_vsd

    scenes = generate(n, os.path.join(root, "scenes"), seed=seed, size=size)
    read = read_vsd(scenes.vsd1, scenes.vsd2, scenes.images)
    build(read.records, os.path.join(root, "instructions"), seed=seed)
    return os.path.join(root, "instructions")


def task_rows(dataset, task: int) -> list[dict]:
    """The held-out samples of one task, with their gold answer and pair names."""
    return [
        dict(dataset[i], **{k: row[k] for k in ("answer",)})
        for i, row in enumerate(dataset.rows)
        if row["id"].endswith(f"-t{task}")
    ]


def describe(
    model, processor, rows: list[dict], gold: dict[str, tuple[str, str, str]], budget: int, min_lines: int
) -> dict:
    """Task-3 answers from the annotate job's own engine (`HFEngine`, greedy, the trained budget,
    ``min_lines`` as the generate stage sets it): sentences per answer, how each answer ended,
    and the share of the model's sentences that state the true relation."""
    from vsd.annotate.engines import EngineConfig, make_engine
    from vsd.annotate.engines.base import ImageRequest, Prompt
    from vsd.annotate.engines.prompting import task_prompts
    from vsd.relations import parse_relation

    model.eval()
    engine = make_engine(
        EngineConfig(kind="hf", dtype="float32", device="cpu", batch_size=16),
        model=model,
        processor=processor,
    )
    counts: Counter = Counter()
    endings: Counter = Counter()
    stated: Counter = Counter()
    examples = []
    requests = []
    for row in rows:
        subject, relation, object_ = gold[row["id"].rsplit("-t", 1)[0]]
        text = task_prompts(subject, object_, [3])[0].text
        prompt = Prompt(3, text, max_new_tokens=budget, min_lines=min_lines)
        requests.append((ImageRequest(row["id"], row["image"], [prompt]), (subject, relation, object_)))
    for start in range(0, len(requests), 16):
        chunk = requests[start : start + 16]
        for result, (_, (subject, relation, object_)) in zip(engine.generate([r for r, _ in chunk]), chunk):
            answer = result.answers[0]
            lines = [x.strip() for x in answer.text.splitlines() if x.strip()]
            counts[min(len(lines), 4)] += 1
            endings["budget" if answer.truncated else f"eos after {len(lines)}"] += 1
            for line in lines[:3]:
                said = parse_relation(line, subject, object_)
                stated["true" if said == relation else "none" if said is None else "other"] += 1
            if len(examples) < 3:
                examples.append(answer.text)
    model.train()
    n = max(1, len(rows))
    return {
        "three_sentence_share": round(sum(v for k, v in counts.items() if k >= 3) / n, 3),
        "sentences": dict(sorted(counts.items())),
        "endings": dict(endings.most_common()),
        "true_relation_share": round(stated["true"] / max(1, sum(stated.values())), 3),
        "stated": dict(stated),
        "examples": examples,
    }


def task1_rows(dataset) -> list[dict]:
    """The held-out task-1 samples with their gold relation (the answer of a task-1 row)."""
    return [
        dict(dataset[i], relation=row["answer"])
        for i, row in enumerate(dataset.rows)
        if row["id"].endswith("-t1")
    ]


def choice_scores(model, collate, samples: list[dict]):
    """Sum log-probability of each sample's answer tokens (``</s>`` included)."""
    import torch

    batch = collate(samples)
    labels = batch["labels"]
    with torch.no_grad():
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values=batch["pixel_values"],
        ).logits.float()
    logp = torch.log_softmax(logits[:, :-1], -1)
    tgt = labels[:, 1:]
    mask = tgt != -100
    return (logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask).sum(-1)


def evaluate(model, processor, collate, rows: list[dict], generate: bool = True) -> dict:
    """Constrained-choice and greedy-generation task-1 accuracy, overall and per relation."""
    import torch

    from vsd.relations import RELATIONS, normalize_relation
    from vsd.train.collator import conversation

    model.eval()
    hits = {"choice": Counter(), "greedy": Counter()}
    totals: Counter = Counter()
    confusion: Counter = Counter()
    for row in rows:
        gold = row["relation"]
        totals[gold] += 1
        cands = [{"image": row["image"], "prompt": row["prompt"], "answer": r} for r in RELATIONS]
        pred = RELATIONS[int(choice_scores(model, collate, cands).argmax())]
        hits["choice"][gold] += int(pred == gold)
        confusion[(gold, pred)] += 1
        if generate:
            text = processor.apply_chat_template(
                conversation(row["prompt"], None), tokenize=False, add_generation_prompt=True
            )
            enc = processor(text=[text], images=[row["image"]], return_tensors="pt")
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=8, do_sample=False)
            answer = processor.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            hits["greedy"][gold] += int(normalize_relation(answer) == gold)
    model.train()
    n = sum(totals.values())
    result = {}
    for kind, h in hits.items():
        if kind == "greedy" and not generate:
            continue
        result[kind] = {
            "accuracy": sum(h.values()) / n,
            "per_relation": {r: h[r] / totals[r] for r in RELATIONS if totals[r]},
        }
    result["confusions"] = {f"{g} -> {p}": c for (g, p), c in confusion.most_common() if g != p}
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--base", default=DEFAULT_BASE, help="base checkpoint (default: the committed tiny-vsd-base)"
    )
    ap.add_argument("--scenes", type=int, default=300, help="training scenes (x3 instruction rows)")
    ap.add_argument("--heldout", type=int, default=90, help="held-out scenes (task-1 rows scored)")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument(
        "--batch", type=int, default=8, help="global batch (the demo: per-worker batch x 2 workers)"
    )
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup-ratio", type=float, default=0.05)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32.0)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--train-projector", action="store_true")
    ap.add_argument(
        "--lm-head",
        action="store_true",
        help="LoRA on the output head too (its line-break row, see --describe)",
    )
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-before", action="store_true", help="also score the base before fine-tuning")
    ap.add_argument("--no-generate", action="store_true", help="skip the greedy-generation accuracy")
    ap.add_argument("--describe", type=int, default=0, help="decode task 3 on this many held-out pairs")
    ap.add_argument(
        "--min-lines",
        type=int,
        default=3,
        help="task 3's line floor to measure beside none (stages.generate)",
    )
    ap.add_argument(
        "--task-weights", default="1,1,1", help="sampling weight of tasks 1,2,3 in the training order"
    )
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="vsd-probe-")
    try:
        return _run(args, tmp, t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args, tmp: str, t0: float) -> int:

    from vsd.model.loader import load_model
    from vsd.model.lora import DEFAULT_TARGETS, LoraSettings, attach_lora
    from vsd.train.collator import LlavaCollator
    from vsd.train.data import InstructionDataset
    from vsd.train.loop import TorchStepper, make_optimizer, make_scheduler, run_step

    train = InstructionDataset(instruction_set(args.scenes, args.seed, os.path.join(tmp, "train")))
    held_set = InstructionDataset(instruction_set(args.heldout, args.seed + 1000, os.path.join(tmp, "held")))
    held = task1_rows(held_set)
    weights = [float(w) for w in args.task_weights.split(",")]
    pool = [i for i, row in enumerate(train.rows) for _ in range(int(weights[int(row["id"][-1]) - 1]))]
    print(
        f"[data] {len(train)} training rows, {len(held)} held-out task-1 rows in {time.time() - t0:.0f}s",
        flush=True,
    )

    model, processor = load_model(args.base, dtype="float32")
    collate = LlavaCollator(processor, args.max_length)
    if args.eval_before:
        before = evaluate(model, processor, collate, held, generate=not args.no_generate)
        print(f"[before] task-1 choice accuracy {before['choice']['accuracy']:.3f}", flush=True)
    model = attach_lora(
        model,
        LoraSettings(
            rank=args.rank,
            alpha=args.alpha,
            dropout=args.dropout,
            train_projector=args.train_projector,
            target_modules=f"(?:{DEFAULT_TARGETS})|lm_head" if args.lm_head else DEFAULT_TARGETS,
        ),
    )
    model.train()
    optimizer = make_optimizer(model, args.lr, 0.0)
    scheduler = make_scheduler(optimizer, args.steps, args.warmup_ratio, True)
    stepper = TorchStepper(model, optimizer, scheduler, grad_accum=1, max_grad_norm=1.0)
    rng = random.Random(args.seed)
    order: list[int] = []
    t_train, cpu_train = time.time(), time.process_time()
    for step in range(1, args.steps + 1):
        if len(order) < args.batch:
            order += rng.sample(pool, len(pool))
        batch = collate([train[i] for i in order[: args.batch]])
        del order[: args.batch]
        stats = run_step(stepper, [batch])
        if step % 25 == 0 or step == args.steps:
            print(
                f"step {step} loss {stats.loss:.3f} lr {stats.lr:.2e} {time.time() - t_train:.0f}s",
                flush=True,
            )
    train_s, train_cpu = time.time() - t_train, time.process_time() - cpu_train
    t_eval = time.time()
    after = evaluate(model, processor, collate, held, generate=not args.no_generate)
    print(
        f"[result] {args.steps} steps x batch {args.batch} (lr {args.lr}, rank {args.rank}) in {train_s:.0f}s wall, "
        f"{train_cpu:.0f} CPU-s on {args.threads} threads (wall is inflated when the cores are shared); eval {time.time() - t_eval:.0f}s"
    )
    for kind in ("choice", "greedy"):
        if kind in after:
            per = " ".join(f"{r}={a:.2f}" for r, a in after[kind]["per_relation"].items())
            print(
                f"[result] held-out task-1 {kind} accuracy {after[kind]['accuracy']:.3f} ({len(held)} rows): {per}"
            )
    print(f"[result] confusions: {after['confusions']}")
    if args.describe:
        import pyarrow.parquet as pq

        from vsd.train.answer_lengths import answer_tokens

        meta = pq.read_table(
            os.path.join(tmp, "held", "instructions", "instructions.parquet"),
            columns=["record_id", "subject", "relation", "object"],
        ).to_pylist()
        gold = {m["record_id"]: (m["subject"], m["relation"], m["object"]) for m in meta}
        lengths = answer_tokens(
            [r["id"][-1] for r in train.rows], [r["answer"] for r in train.rows], processor.tokenizer
        )
        from vsd.annotate.budgets import budget_from

        budget = budget_from(lengths["3"])
        t_desc = time.time()
        print(f"[describe] task-3 lengths {lengths['3']} -> budget {budget}")
        for floor in sorted({0, args.min_lines}):
            result = describe(model, processor, task_rows(held_set, 3)[: args.describe], gold, budget, floor)
            print(f"[describe min_lines={floor}] {time.time() - t_desc:.0f}s")
            for key, value in result.items():
                print(f"[describe min_lines={floor}] {key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
