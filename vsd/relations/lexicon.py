"""The parser's closed word lists: verbs, clause boundaries, determiners, position words, and the
verb phrases that state a relation ("wearing", "attached to", "on his left").

VSD captions use a narrow vocabulary, so small hand-kept sets beat a tagger: they are fast, and a
wrong reading is fixed by editing one list here, not the rules in `vsd.relations.parser`.
"""

from __future__ import annotations

from functools import lru_cache

# --------------------------------------------------------------------------------------------
# Word classes
# --------------------------------------------------------------------------------------------

STRONG_VERBS = {
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "am",
    "has",
    "have",
    "had",
    "sits",
    "sit",
    "sat",
    "stands",
    "stand",
    "stood",
    "lies",
    "lie",
    "lay",
    "lays",
    "hangs",
    "hang",
    "hung",
    "rests",
    "rest",
    "seems",
    "appears",
    "remains",
    "stays",
    "looks",
    "grows",
    "floats",
    "flies",
    "runs",
    "walks",
    "goes",
    "leans",
    "holds",
    "covers",
    "sleeps",
    "waits",
    "plays",
    "parks",
    "shows",
    "contains",
    "includes",
    "can",
    "could",
    "will",
    "would",
    "may",
    "might",
    "must",
    "should",
    "do",
    "does",
    "did",
    "rides",
    "swims",
    "hides",
    "lives",
}
# -ing / -ed words that are nouns or adjectives in captions.
NOT_VERBS = {
    "building",
    "buildings",
    "ceiling",
    "clothing",
    "ring",
    "king",
    "thing",
    "things",
    "something",
    "nothing",
    "anything",
    "string",
    "wing",
    "wings",
    "swing",
    "evening",
    "morning",
    "railing",
    "painting",
    "awning",
    "siding",
    "icing",
    "frosting",
    "topping",
    "filling",
    "stuffing",
    "pudding",
    "sibling",
    "crossing",
    "parking",
    "landing",
    "opening",
    "ding",
    "spring",
    "sling",
    "bring",
    "red",
    "bed",
    "shed",
    "sled",
    "seed",
    "weed",
    "reed",
    "need",
    "speed",
    "feed",
    "tweed",
    "steed",
    "colored",
    "coloured",
    "striped",
    "checkered",
    "shaped",
    "haired",
    "sized",
    "pointed",
    "tiled",
    "framed",
    "wooded",
    "bearded",
    "tinted",
    "skinned",
    "legged",
    "sided",
    "handed",
    "eyed",
    "hundred",
    "lighting",
    "wiring",
    "flooring",
    "bedding",
    "seating",
    "housing",
}
NEGATION = {"not", "never", "nor", "neither", "nothing", "none", "nobody", "nowhere"}
BOUNDARY = {",", ";", ".", ":", "!", "?", "(", ")", "but", "while", "whereas", "and"}
#: Tokens that end the noun phrase after a relation: the object must come before any of these.
NP_BREAK = (
    BOUNDARY
    | STRONG_VERBS
    | {
        "/",
        "or",
        "with",
        "without",
        "which",
        "who",
        "whom",
        "whose",
        "where",
        "when",
        "at",
        "from",
        "for",
        "to",
        "through",
        "toward",
        "towards",
        "across",
        "during",
        "like",
        "as",
        "than",
        "not",
        "no",
        "holding",
        "eating",
        "using",
        "watching",
        "looking",
        "carrying",
    }
)
PRONOUNS = {"it", "them", "him", "her", "itself", "themselves"}
EACH_OTHER = (("each", "other"), ("eachother",), ("one", "another"))
CLAUSE_LEAD = {
    "and",
    "also",
    "just",
    "right",
    "directly",
    "immediately",
    "then",
    "further",
    "far",
    "slightly",
    "there",
    "is",
    "are",
    "way",
    "up",
    "down",
    "out",
}
DETERMINERS = {
    "the",
    "a",
    "an",
    "his",
    "her",
    "its",
    "their",
    "this",
    "that",
    "these",
    "those",
    "my",
    "our",
    "your",
    "one",
}
POSITIONS = {
    "left",
    "right",
    "middle",
    "center",
    "centre",
    "background",
    "foreground",
    "distance",
    "top",
    "bottom",
    "side",
    "corner",
    "front",
    "back",
    "edge",
    "hand",
    "upper",
    "lower",
    "far",
    "sky",
    "air",
    "picture",
    "image",
    "photo",
    "frame",
    "scene",
    "forefront",
}
POSITION_MODIFIERS = {
    "upper",
    "lower",
    "far",
    "top",
    "bottom",
    "front",
    "back",
    "left",
    "right",
    "middle",
    "hand",
    "very",
    "same",
}
PASSIVE_BY = {
    "held",
    "worn",
    "made",
    "driven",
    "ridden",
    "drawn",
    "eaten",
    "hit",
    "caught",
    "thrown",
    "taken",
    "shot",
    "owned",
    "led",
    "built",
    "fed",
    "written",
    "seen",
    "given",
}
PARTICIPLES = PASSIVE_BY | {
    "shown",
    "grown",
    "sewn",
    "hung",
    "laid",
    "set",
    "put",
    "kept",
    "spread",
    "stuck",
    "lit",
    "sunk",
    "blown",
    "known",
    "found",
}


@lru_cache(maxsize=65536)
def is_verb(tok: str) -> bool:
    """A verb form, as far as caption English goes: listed verbs and participles, else -ing/-ed."""
    if tok in STRONG_VERBS or tok in PARTICIPLES:
        return True
    if tok in NOT_VERBS or len(tok) < 5:
        return False
    return tok.endswith(("ing", "ed"))


# --------------------------------------------------------------------------------------------
# Relation phrases beyond the vocabulary's synonyms
# --------------------------------------------------------------------------------------------

#: Verb phrases that state a relation, with the reverse reading: "man wearing a hat" is man `in`
#: hat and hat `on` man; "forest full of trees" says nothing forward, and tree `in` forest back.
VERB_PHRASES: dict[str, tuple[str | None, str | None]] = {
    **{v: ("in", "on") for v in ("wearing", "wears", "wore", "dressed in", "clad in")},
    **{v: (None, "in") for v in ("full of", "filled with", "containing", "contains")},
    **{
        f"{v} to": ("on", "under")
        for v in (
            "attached",
            "connected",
            "nailed",
            "taped",
            "glued",
            "stuck",
            "fixed",
            "pinned",
            "mounted",
            "tied",
            "affixed",
            "clipped",
        )
    },
    "hanging from": ("under", "above"),
    "hangs from": ("under", "above"),
    # "branches covered in snow": the snow is above (VSD annotates it so), the branches under.
    **{f"covered {p}": ("under", "above") for p in ("in", "with", "by")},
    # "a suitcase on his left": the object is the pronoun (see the parser's *stranded* rule).
    **{
        f"{prep} {pron} {side}{tail}": (
            f"to the {side} of",
            f"to the {'right' if side == 'left' else 'left'} of",
        )
        for prep in ("on", "to", "at")
        for pron in ("his", "her", "its", "their")
        for side in ("left", "right")
        for tail in ("", " side", " hand side")
    },
}
#: Phrases that may end without an object ("the pole on the left", "a car in front").
DANGLING_PHRASES = {
    "on the left",
    "to the left",
    "on the right",
    "to the right",
    "in front",
    "infront",
    "on top",
    "underneath",
    "below",
    "above",
    "inside",
    "behind",
    "beside",
    "nearby",
}
ADVERB_ONLY = {"nearby", "near by", "close by"}  # adjectives after an article: "a nearby toy"
