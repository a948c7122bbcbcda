"""How often the relation parsed from a VSD caption agrees with the record's annotated triple.

The relation parser is trusted by the verify stage and the task 2-3 evaluation; this measures it
on real annotations (the test asserts floors, `bench/parser_agreement.py` prints the numbers).
Captions belong to a record, not to a triple, so each caption is scored against the triple whose
names it mentions (the first triple on ties): a record with four triples and one caption about
"a girl in front of a man" is scored on the girl/man triple.

It scores the parser, not a model: a model's answers are scored by `vsd.evaluate.relation_metrics`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vsd.relations import RELATIONS, names_mentioned, parse_relation


@dataclass
class Agreement:
    """Counts over captions; `named` splits them by how many of the two names the caption uses."""

    captions: int = 0
    found: int = 0
    agree: int = 0
    #: names mentioned (0, 1, 2) -> [captions, found, agree]
    named: dict[int, list[int]] = field(default_factory=lambda: {k: [0, 0, 0] for k in (0, 1, 2)})
    #: annotated relation -> [captions, found, agree]
    per_relation: dict[str, list[int]] = field(default_factory=lambda: {r: [0, 0, 0] for r in RELATIONS})
    #: (caption, subject, annotated relation, object, parsed relation)
    disagreements: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    @property
    def found_share(self) -> float:
        return self.found / self.captions if self.captions else 0.0

    @property
    def agree_share(self) -> float:
        """Share of the captions with a parsed relation whose relation is the annotated one."""
        return self.agree / self.found if self.found else 0.0


def caption_triple(caption: str, triples: Sequence[dict]) -> tuple[dict, int]:
    """The triple a caption talks about (most of its two names mentioned, first on ties) and how
    many of its names (0-2) the caption mentions."""
    best, best_n = triples[0], -1
    for t in triples:
        n = names_mentioned(caption, t["s"], t["o"])
        if n > best_n:
            best, best_n = t, n
    return best, best_n


def measure(records: Iterable[dict]) -> Agreement:
    """Parse every caption of every VSD record (``triple_list`` + ``captions``) and count."""
    out = Agreement()
    for rec in records:
        triples = rec.get("triple_list") or []
        if not triples:
            continue
        for caption in rec.get("captions") or []:
            t, n_named = caption_triple(caption, triples)
            got = parse_relation(caption, t["s"], t["o"])
            found, agree = got is not None, got == t["p"]
            out.captions += 1
            out.found += found
            out.agree += agree
            for counts in (out.named[n_named], out.per_relation.setdefault(t["p"], [0, 0, 0])):
                counts[0] += 1
                counts[1] += found
                counts[2] += agree
            if found and not agree:
                out.disagreements.append((caption, t["s"], t["p"], t["o"], got))
    return out


def load_records(path: str | Path) -> list[dict]:
    """A VSD annotation file as plain records (the reader in `vsd.data` validates; this only counts)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)
