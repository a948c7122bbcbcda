"""The dataset card (``_README.md``) written beside the annotation Parquet.

Its name starts with ``_`` so pandas and pyarrow, which read every other file of a folder as
Parquet, skip it; ``datasets.load_dataset(<output>)`` finds exactly the data files by itself
(bookkeeping is under ``__vsd/``, which it skips). Publishing to the Hugging Face Hub: upload it as
``README.md`` -- the YAML header then names the data files. The body documents the schema (from the
column docs in `vsd.schema`, so it cannot drift), the counts and the relation histogram over every
run so far, all from the stored totals (no data is re-read).
"""

from __future__ import annotations

from vsd.relations import RELATIONS
from vsd.schema import PROMPT_VERSION, column_docs


def _cell(text: str) -> str:
    """A table cell: a ``|`` inside a doc ("ok | error") would split the Markdown row."""
    return text.replace("|", "\\|")


def _schema_table() -> str:
    lines = ["| column | type | description |", "|---|---|---|"]
    lines += [f"| `{name}` | `{tp}` | {_cell(doc)} |" for name, tp, doc in column_docs()]
    return "\n".join(lines)


def _histogram(relations: dict[str, int]) -> str:
    total = sum(relations.values()) or 1
    lines = ["| relation | rows | share |", "|---|---:|---:|"]
    for rel in list(RELATIONS) + sorted(set(relations) - set(RELATIONS)):
        n = relations.get(rel, 0)
        lines.append(f"| {rel} | {n} | {n / total:.1%} |")
    return "\n".join(lines)


def _count_table(title: str, counts: dict[str, int], none: str) -> str:
    lines = [f"| {title} | rows |", "|---|---:|"]
    lines += [f"| `{_cell(k)}` | {n} |" for k, n in sorted(counts.items())] or [f"| {none} | 0 |"]
    return "\n".join(lines)


def render_card(counts: dict, runs: list[str], model: str, current: int | None = None) -> str:
    """``counts`` are every row the runs wrote (superseded and deleted ones included); ``current``
    is what a reader gets now (the table's current version)."""
    errors = counts.get("error", {})
    error_lines = "\n".join(f"| {reason} | {n} |" for reason, n in sorted(errors.items())) or "| (none) | 0 |"
    return f"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: "run_date=*/part-*.parquet"
tags:
- visual-spatial-description
- llava-vsd
---

# Visual spatial descriptions (LLaVA-VSD annotations)

Machine annotations of object pairs: for each image and pair of boxed objects, how the subject is
placed relative to the object (task 1: one of {len(RELATIONS)} relations; task 2: one sentence;
task 3: three sentences), checked against the boxes' geometry (`consistent`, `flags`) and refined
for fluency with a guardrail (`refined_*`, `refine_status`). One row per image x pair: pairs
given with the input (`box_source = given`) or, for images given without pairs, chosen from
detected objects by the propose stage (`box_source = detected`, with detector scores and, with a
depth model, box depths); `pair_index` -1 is the scene-level description of an image without
pairs. Rows with `status = error` carry the reason in `error` (`<reason>: <detail>`).

- latest model: `{model}`
- prompt version: `{PROMPT_VERSION}`
- runs: {", ".join(runs) if runs else "(none)"}

## Counts

Current rows (what a reader of the table gets now): {"unknown" if current is None else current}. The
counts below are every row the runs wrote, superseded versions and deleted sources included.

| | rows |
|---|---:|
| total | {counts.get("rows", 0)} |
| ok | {counts.get("ok", 0)} |
| error | {sum(errors.values())} |
| ok but inconsistent (see `flags`) | {counts.get("inconsistent", 0)} |
| ok at scene level (no pair given: `description` is the first of the scene's sentences) | {counts.get("scene_level", 0)} |

| error reason | rows |
|---|---:|
{error_lines}

Refinement (`refine_status` of ok rows: `refined` every text rewritten and kept, `partial` some,
`kept`/`skipped` none, `filled` some sentence filled in by repair; a cut-off sentence is never
refined) and flags (rows carrying each kind;
`truncated:*` the model hit its token budget, `repaired:*` the refined text was re-decoded to state
task 1's relation, `not_repaired` task 1 and the boxes disagree):

{_count_table("refine_status", counts.get("refine_status", {}), "(none)")}

Who wrote each published sentence (`description_source` for `refined_description`,
`descriptions_source` for `refined_descriptions`, one value per sentence): `model` -- the model's
own sentence as generated; `refined` -- a model sentence the refiner changed under the guardrail;
`model_completed` -- a forced opening stating task 1's relation, ended by the model; `template` --
that forced opening alone. Only `model` and `refined` are the model's description; the other two
state task 1's label in a fixed frame, and a row holding any of them has `refine_status = filled`.
A model sentence that states another relation than task 1 is overwritten only when the boxes'
geometry (with depth where present) sides with task 1; otherwise it is published as written and
flagged `kept_disagreeing:*`. `vsd evaluate` reports the shares and scores model-written
sentences apart from the published ones.

{_count_table("flag", counts.get("flags", {}), "(no flags)")}

## Relation histogram (task 1, ok pair rows)

{_histogram(counts.get("relations", {}))}

## Schema

{_schema_table()}

Boxes are normalised `[x0, y0, x1, y1]` in 0..1. Files: `run_date=YYYY-MM-DD/part-*.parquet`
(one partition per nightly run; read the folder with pandas, pyarrow, Ray Data, duckdb or
`datasets`), `__vsd/runs/<run_id>.json` (counts, model, adapter hash, config and timings of each
run), `__vsd/partitions/run_date=*.json` (which runs wrote a partition).
"""
