"""`vsd evaluate --pred URI --ref URI --out DIR [--no-captions]`: score predictions, print a summary,
write report.json / report.md / confusion.png."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="VSD metrics of predictions against reference captions",
        description="Task 1 accuracy / macro-F1 / confusion; tasks 2-3 BLEU-1..4, METEOR, ROUGE-L, CIDEr "
        "(pycocoevalcap, each sentence against all references; SPICE when its models are installed) "
        "and the share of sentences stating the true relation.",
    )
    p.add_argument(
        "--pred",
        required=True,
        help="annotation Parquet, predictions JSONL {record_id, task, prediction}, "
        "or an instruction Parquet (self-evaluation); a file, directory or prefix, local or s3://",
    )
    p.add_argument(
        "--ref", required=True, help="instruction Parquet (vsd data build): file, directory or prefix"
    )
    p.add_argument(
        "--out", required=True, help="directory (local or s3://) for report.json, report.md, confusion.png"
    )
    p.add_argument("--no-captions", action="store_true", help="skip the caption metrics (no Java needed)")
    p.add_argument(
        "--no-spice", action="store_true", help="never run SPICE, even when its models are installed"
    )
    p.set_defaults(func=run)


def summary_lines(report: dict) -> list[str]:
    """The short table printed after an evaluation."""
    from vsd.evaluate.report import description_rows

    def f(v) -> str:
        return "   –  " if v is None else f"{v:6.4f}"

    lines = []
    for task, c in report["coverage"]["tasks"].items():
        if c["references"]:
            lines.append(
                f"task {task}: {c['predicted']}/{c['references']} predicted, {c['missing']} missing "
                f"({c['missing_error_rows']} error rows)"
            )
    t1 = report.get("task1")
    if t1:
        lines.append(
            f"task 1: accuracy {f(t1['accuracy'])}  macro-F1 {f(t1['macro_f1'])}  other {t1['other']}"
        )
    rows = description_rows(report)
    if rows:
        lines.append("task variant       BLEU-1 BLEU-4 METEOR ROUGE-L CIDEr  relation")
        for task, variant, block in rows:
            cap = block.get("captions") or {}
            lines.append(
                f"{task:>4} {variant:<13} {f(cap.get('Bleu_1'))} {f(cap.get('Bleu_4'))} {f(cap.get('METEOR'))} "
                f"{f(cap.get('ROUGE_L'))}  {f(cap.get('CIDEr'))} {f(block['relation_in_text']['agree_share'])}"
            )
    for task, prov in sorted((report.get("provenance") or {}).items()):
        shares = ", ".join(f"{k} {v:.1%}" for k, v in prov["shares"].items())
        lost = prov["overwritten_true"]
        lines.append(
            f"{task} published sentences by writer: {shares or 'none'}; true sentences overwritten: "
            f"{lost['sentences']} in {lost['rows']} rows"
        )
    if report.get("spice"):
        lines.append(report["spice"])
    return lines


def run(args: argparse.Namespace) -> int:
    from vsd.evaluate.report import evaluate

    report = evaluate(
        args.pred, args.ref, args.out, captions=not args.no_captions, spice=False if args.no_spice else None
    )
    for line in summary_lines(report):
        print(line)
    print(f"report: {report['files']['markdown']} ({report['seconds']:.1f} s)")
    return 0
