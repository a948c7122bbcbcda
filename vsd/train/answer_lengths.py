"""How long the trained answers are, per task, in tokens: the record annotation sizes its budgets from.

A hand-set ``max_new_tokens`` either cuts task-3's three sentences off or lets task 2 ramble; the
lengths the model was trained to produce say what each task needs. Rank 0 measures them once from
the instruction table (a seeded sample of at most ``SAMPLE`` answers per task, so a large corpus
costs seconds) and writes them into every checkpoint's ``meta.json`` as ``answer_tokens``;
``vsd export`` copies that into ``vsd_export.json`` and `vsd.annotate.budgets` reads it back.
"""

from __future__ import annotations

import random
from collections import defaultdict

SAMPLE = 5000  # answers per task: p99 of 5,000 is stable to a token or two


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile (the value at rank ceil(q*n)); the list must be sorted, non-empty."""
    rank = max(1, -(-int(q * 1000) * len(sorted_values) // 100000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def length_stats(lengths: list[int]) -> dict:
    values = sorted(lengths)
    return {
        "n": len(values),
        "mean": round(sum(values) / len(values), 2),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": values[-1],
    }


def answer_tokens(tasks: list[int], answers: list[str], tokenizer, seed: int = 0) -> dict[str, dict]:
    """``{"<task>": {"n", "mean", "p50", "p90", "p99", "max"}}`` for every task with answers;
    lengths count the answer's tokens plus its EOS (what the model must generate)."""
    by_task: dict[int, list[str]] = defaultdict(list)
    for task, text in zip(tasks, answers):
        by_task[int(task)].append(str(text))
    rng = random.Random(seed)
    out = {}
    for task, texts in sorted(by_task.items()):
        sample = texts if len(texts) <= SAMPLE else rng.sample(texts, SAMPLE)
        ids = tokenizer(sample, add_special_tokens=False)["input_ids"]
        out[str(task)] = length_stats([len(i) + 1 for i in ids])
    return out


def dataset_answer_tokens(data_uri: str, tokenizer, seed: int = 0) -> dict[str, dict]:
    """`answer_tokens` of an instruction dataset (only its ``task`` and ``answer`` columns are read)."""
    import pyarrow.parquet as pq

    from vsd import storage
    from vsd.train.data import dataset_root

    _, table_uri = dataset_root(data_uri)
    fs, path = storage.resolve(table_uri)
    table = pq.read_table(path, filesystem=fs, columns=["task", "answer"])
    return answer_tokens(
        table.column("task").to_pylist(), table.column("answer").to_pylist(), tokenizer, seed
    )
