"""Verify stage (CPU tasks): do the model's own answers agree with each other and with the boxes?

Per pair: the relation each description states (``parse_relation`` from subject to object) is
compared with the task-1 label, and the task-1 label with what the box geometry decides
(``geometry_contradicts`` is lenient: touching boxes never contradict, and ``behind`` / ``in front
of`` only when the pair carries box depths from the propose stage with a clear gap the other way;
without depths the check is the 2-D one). Findings go to
``flags``; ``consistent`` is true when nothing disagrees. Nothing is dropped or rewritten here:
flags are for filtering downstream, and a label the geometry doubts may still be right (3-D).

Flags: ``description_disagrees:task2``, ``description_disagrees:task3.<i>`` (sentence i),
``no_relation_stated:task2`` / ``:task3.<i>`` (parser found none; not an inconsistency),
``not_a_relation:task1`` (engine broke the constrained choice), ``geometry_contradicts:task1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from vsd.annotate.items import SCENE, from_table, ok_pairs, to_table
from vsd.annotate.stages.base import Resources, RunContext, enabled_always, map_stage, resources
from vsd.relations import RELATIONS, BoxDepths, geometric_relation, geometry_contradicts, parse_relation

if TYPE_CHECKING:
    from vsd.annotate.config import AnnotateConfig

NAME = "verify"
HELP = "check each answer against the other answers and the boxes' geometry (CPU tasks)"
enabled = enabled_always

DISAGREEING = ("description_disagrees:", "geometry_contradicts:", "not_a_relation:")


@dataclass
class VerifyStageConfig:
    resources: Resources = resources("CPU tasks; batch_size default 16", num_cpus=0.25)


Config = VerifyStageConfig


def add(ds, cfg: AnnotateConfig, ctx: RunContext):
    return map_stage(ds, verify_batch, cfg.stages.verify.resources, default_batch=16)


def check(pair: dict) -> None:
    """Fill ``geometry_relation``, ``consistent`` and ``flags`` of one generated pair."""
    flags = list(pair["flags"] or [])
    if pair["pair_index"] == SCENE:
        pair.update(flags=flags, consistent=None)  # nothing to check a scene description against
        return
    subject, object_ = pair["subject"], pair["object"]
    sb, ob = pair["subject_box"], pair["object_box"]
    depths = BoxDepths.from_pair(pair)  # None unless a depth model measured both boxes
    pair["geometry_relation"] = geometric_relation(sb, ob, depths)
    label = pair["relation"]
    if label is not None and label not in RELATIONS:
        flags.append("not_a_relation:task1")
        label = None
    if label is not None and geometry_contradicts(label, sb, ob, depths):
        flags.append("geometry_contradicts:task1")
    sentences = []
    if pair["description"] is not None:
        sentences.append(("task2", pair["description"]))
    sentences += [(f"task3.{i}", s) for i, s in enumerate(pair["descriptions"] or [])]
    for where, sentence in sentences:
        stated = parse_relation(sentence, subject, object_)
        if stated is None:
            flags.append(f"no_relation_stated:{where}")
        elif label is not None and stated != label:
            flags.append(f"description_disagrees:{where}")
        elif label is None and geometry_contradicts(stated, sb, ob, depths):
            flags.append(f"geometry_contradicts:{where}")
    pair["flags"] = flags
    pair["consistent"] = not any(f.startswith(DISAGREEING) for f in flags)


def verify_batch(batch: pa.Table) -> pa.Table:
    """The Ray Data ``map_batches`` function of this stage."""
    items = from_table(batch)
    for item in items:
        for pair in ok_pairs(item):
            check(pair)
    return to_table(items)
