"""The 9 VSD spatial relations: what they are called, what boxes say about them, and which one a
sentence states.

Everything that has to agree on what a relation *is* imports it from here: the reader validates
triples against `RELATIONS` and converts boxes with `vsd_box_to_xyxy`, the instruction builder lists
the relations in the task-1 prompt (paper order), the verify stage compares a description's
`parse_relation` with what `geometric_relation` / `geometry_contradicts` allow, and the evaluation
scores generated sentences by their parsed relation.

    vocabulary   RELATIONS, INVERSE, SYNONYMS, normalize_relation
    geometry     box conversions and validity, what boxes decide or rule out (2-D, plus depth when given)
    depth        BoxDepths: which of two boxes is clearly nearer (relative or metric depth)
    mentions     where a sentence names an object (plurals, typos, compounds, same-thing words)
    lexicon      the parser's closed word lists
    phrases      relation phrases found in a tokenised sentence (longest match)
    parser       parse_relation: clause rules tying a phrase to the two named objects

The modules import downwards only (vocabulary, depth <- geometry; vocabulary, lexicon <- phrases;
mentions, phrases <- parser), so this file can re-export them all without an import cycle.
"""

from vsd.relations.depth import DEPTH_KINDS, BoxDepths
from vsd.relations.geometry import (
    CONTAINMENT,
    DEPTH_RELATIONS,
    DOMINANCE,
    SEPARATION,
    box_is_valid,
    geometric_relation,
    geometry_contradicts,
    vsd_box_to_xyxy,
    xyxy_to_vsd_box,
)
from vsd.relations.mentions import find_mentions, names_mentioned, tokenize
from vsd.relations.parser import parse_relation
from vsd.relations.vocabulary import INVERSE, RELATIONS, SYNONYMS, normalize_relation

__all__ = [
    "CONTAINMENT",
    "DEPTH_KINDS",
    "DEPTH_RELATIONS",
    "BoxDepths",
    "DOMINANCE",
    "INVERSE",
    "RELATIONS",
    "SEPARATION",
    "SYNONYMS",
    "box_is_valid",
    "find_mentions",
    "geometric_relation",
    "geometry_contradicts",
    "names_mentioned",
    "normalize_relation",
    "parse_relation",
    "tokenize",
    "vsd_box_to_xyxy",
    "xyxy_to_vsd_box",
]
