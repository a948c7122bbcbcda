"""Held-out reference captions in phrasings no writer in the system uses.

The synthetic scenes' captions (`vsd.data.scene_captions`) share their frames with the templates
repair fills in (`vsd.data.prompts`: "The X is REL the Y.", "There is a X REL the Y.") -- so
against them a bare template scores as well as a sentence the model wrote, and filling in raises
the caption metrics. The demo's held-out references are therefore written here, from frames that
neither the templates, the training captions nor the rules refiner produce; only the relation
words are shared (``to the left of`` has few other names), so a sentence scores by saying the
right relation between the right objects, not by matching a frame. `reference_frames_are_apart`
is what the test checks.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from vsd.data.scene_captions import PHRASES

# Frames: {s} subject, {o} object, {p} the relation's phrase. None opens with "the {s} is",
# "there is", "a {s} can be seen", "a {s} <verb>", "the {s} is shown" (the writers' frames).
FRAMES: tuple[str, ...] = (
    "You can spot the {s} {p} the {o}.",
    "In this image the {s} appears {p} the {o}.",
    "Looking at the scene, one finds the {s} {p} the {o}.",
    "The picture shows the {s} {p} the {o}.",
    "Here the {s} stays {p} the {o}.",
    "Observe how the {s} lies {p} the {o}.",
    "One object, the {s}, is found {p} the {o}.",
    "This drawing has the {s} {p} the {o}.",
)
PER_RECORD = 4  # references per held-out record (the VSD files have 3-6 captions per pair)


def reference_captions(record_id: str, subject: str, relation: str, object_: str, seed: int = 0) -> list[str]:
    """``PER_RECORD`` references for one pair, seeded per record (a record's references do not
    depend on the others'), in distinct frames and, where the relation has them, distinct phrases."""
    rng = random.Random(f"references:{seed}:{record_id}")
    frames = rng.sample(FRAMES, PER_RECORD)
    phrases = list(PHRASES[relation])
    rng.shuffle(phrases)
    return [f.format(s=subject, o=object_, p=phrases[i % len(phrases)]) for i, f in enumerate(frames)]


def writer_frames(subject: str = "cup", relation: str = "on", object_: str = "plate") -> list[str]:
    """Openings the system's writers use (templates, training captions), as lower-case regexes."""
    s, o = re.escape(subject), re.escape(object_)
    return [
        rf"^the {s} is\b",
        r"^there is\b",
        rf"^an? {s} can be seen\b",
        rf"^an? (\w+ )?{s} (is )?(resting|sitting|lying|placed|drawn|located|positioned|partly|standing)\b",
        rf"^the {s} is shown\b",
        rf"^the {o} is\b",
    ]


def reference_frames_are_apart() -> bool:
    """No reference frame starts the way a template or a training caption does."""
    sample = [f.format(s="cup", o="plate", p="on").lower() for f in FRAMES]
    return not any(re.search(rx, text) for rx in writer_frames() for text in sample)


def rewrite_references(instructions_dir: str | Path, seed: int = 0) -> int:
    """Replace the ``references`` column of a built instruction set with `reference_captions`
    (the demo's held-out split); returns the rows rewritten. The answers stay: they are the
    training-style targets, the references are what evaluation compares against."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(instructions_dir) / "instructions.parquet"
    table = pq.read_table(path)
    cols = table.select(["record_id", "subject", "relation", "object"]).to_pylist()
    refs = [reference_captions(c["record_id"], c["subject"], c["relation"], c["object"], seed) for c in cols]
    index = table.schema.get_field_index("references")
    table = table.set_column(index, table.schema.field(index), pa.array(refs, table.schema.field(index).type))
    pq.write_table(table, path)
    return table.num_rows
