"""Where a sentence mentions an object by name: tokens, plurals, typos, compounds, same-thing words.

VSD names and captions rarely match word for word ('ballons' / 'balloons', 'tv' / 'television',
'person walking' / 'a person is walking', 'tablecloth' / 'table cloth'), so a name is looked for in
tiers, most exact first, and the first tier that finds it wins. The relation parser builds on this.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+|[,;:.!?()/]")
_IS_CONTRACTION = {"there", "it", "that", "here", "what", "who", "he", "she", "where", "this"}


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens; contractions expanded (``isn't`` -> ``is not``), possessive ``'s`` kept."""
    out: list[str] = []
    for tok in _TOKEN.findall(text.lower().replace("\u2019", "'").replace("-", " ").replace("_", " ")):
        if "'" not in tok:
            out.append(tok)
            continue
        base, suffix = tok.split("'", 1)
        if suffix == "t" and base.endswith("n"):
            out += [base[:-1], "not"]
        elif suffix == "s":
            out += [base, "is" if base in _IS_CONTRACTION else "'s"]
        elif suffix == "re":
            out += [base, "are"]
        else:
            out.append(base)
    return out


_IRREGULAR = {
    "men": "man",
    "women": "woman",
    "people": "person",
    "children": "child",
    "feet": "foot",
    "teeth": "tooth",
    "mice": "mouse",
    "geese": "goose",
    "leaves": "leaf",
    "knives": "knife",
    "shelves": "shelf",
    "wolves": "wolf",
    "halves": "half",
    "loaves": "loaf",
    "calves": "calf",
    "scarves": "scarf",
    "buses": "bus",
    "glasses": "glasses",
    "pants": "pants",
    "jeans": "jeans",
    "shorts": "shorts",
    "clothes": "clothes",
    "bleachers": "bleachers",
    "ladies": "lady",
    "skis": "ski",
    "species": "species",
    "series": "series",
    "dice": "die",
}


@lru_cache(maxsize=65536)
def singular(word: str) -> str:
    """Crude English singular, enough to match 'trees' with 'tree' and 'benches' with 'bench'."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses", "zes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def _one_indel(a: str, b: str) -> bool:
    """b is a with one letter inserted (typos like 'ballons' for 'balloons')."""
    if len(b) != len(a) + 1:
        return False
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1 :]


def _one_swap(a: str, b: str) -> bool:
    """Two neighbouring letters swapped ('perosn', 'hyrdant')."""
    if len(a) != len(b) or a == b:
        return False
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


def _near_spelling(a: str, b: str) -> bool:
    if min(len(a), len(b)) >= 5 and (_one_indel(a, b) or _one_indel(b, a) or _one_swap(a, b)):
        return True
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return len(short) >= 4 and long_.endswith(short)  # compounds: 'lightbulb' for 'bulb'


#: Different words for the same thing in VSD names vs captions ('tv' / 'television').
_SAME_THING = [
    {"tv", "television"},
    {"airplane", "plane", "aircraft", "jet", "airliner"},
    {"doughnut", "donut"},
    {"bike", "bicycle"},
    {"motorcycle", "motorbike"},
    {"skateboarder", "skater"},
    {"sofa", "couch"},
    {"rug", "carpet"},
    {"phone", "cellphone", "telephone"},
    {"car", "automobile"},
    {"kid", "child"},
    {"picture", "photo", "photograph"},
    {"tree", "bush"},
    {"building", "house"},
    {"road", "street"},
    {"sidewalk", "pavement"},
    {"hill", "mountain"},
    {"rock", "stone"},
    {"cup", "mug"},
    {"fence", "railing", "guardrail"},
    {"lamp", "light"},
    {"grass", "lawn"},
    {"sea", "ocean", "water"},
    {"stair", "step", "staircase"},
    {"background", "distance"},
    {"bag", "purse", "handbag"},
    {"hat", "cap"},
    {"jacket", "coat"},
    {"cat", "kitty", "kitten"},
    {"dog", "puppy"},
]
_PEOPLE = {
    "person",
    "man",
    "woman",
    "boy",
    "girl",
    "guy",
    "lady",
    "child",
    "kid",
    "player",
    "skier",
    "surfer",
    "skateboarder",
    "rider",
    "people",
    "photographer",
    "worker",
    "umpire",
    "catcher",
    "batter",
    "pitcher",
    "adult",
    "gentleman",
    "male",
    "female",
    "cook",
    "chef",
}
_ALIASES: dict[str, set[str]] = {}
for _group in _SAME_THING:
    for _w in _group:
        _ALIASES.setdefault(_w, set()).update(_group - {_w})

COLOURS = {
    "black",
    "white",
    "red",
    "blue",
    "green",
    "yellow",
    "orange",
    "purple",
    "pink",
    "brown",
    "gray",
    "grey",
    "silver",
    "gold",
    "tan",
    "dark",
    "light",
    "beige",
    "golden",
}
_NAME_STOPWORDS = {
    "the",
    "a",
    "an",
    "of",
    "and",
    "one",
    "two",
    "three",
    "left",
    "right",
    "other",
    "big",
    "small",
    "large",
    "little",
} | COLOURS

Span = tuple[int, int]


@lru_cache(maxsize=8192)
def _name_words(name: str) -> tuple[str, ...]:
    return tuple(singular(w) for w in tokenize(name) if w != "'s")


def find_mentions(sentence_tokens: Sequence[str], name: str) -> list[Span]:
    """Token spans where `name` is mentioned, trying in turn: the whole name (also written as one
    word, 'table cloth' / 'tablecloth'), its head noun (last content word, preferring a non -ing
    word: 'person walking' -> 'person'), a near spelling or compound, a same-thing word
    ('tv' / 'television'), and for person names any person word ('person' / 'man')."""
    return list(_mentions(tuple(sentence_tokens), name))


def _heads(words: tuple[str, ...]) -> list[str]:
    """The words that name the thing: the head noun ('sign' of 'street sign', 'stack' of 'stack of
    brochures'), then -ing words that may be the noun after all ('person walking' -> 'person')."""
    if "of" in words[1:]:
        words = words[: words.index("of", 1)]
    content = [w for w in words if w not in _NAME_STOPWORDS and not w.isdigit()] or list(words)
    nouns = [w for w in content if not w.endswith("ing")]
    return nouns[-1:] + [w for w in reversed(content) if w.endswith("ing")] if nouns else content[::-1]


@lru_cache(maxsize=32768)
def _mentions(sentence_tokens: tuple[str, ...], name: str) -> tuple[Span, ...]:
    words = _name_words(name)
    if not words:
        return ()
    sing = [singular(t) for t in sentence_tokens]
    k, n = len(words), len(sing)
    full = [(i, i + k) for i in range(n - k + 1) if tuple(sing[i : i + k]) == words]
    if full:
        return tuple(full)
    joined = "".join(words)
    glued = [
        (i, i + 2) for i in range(n - 1) if singular(sentence_tokens[i] + sentence_tokens[i + 1]) == joined
    ]
    if glued:
        return tuple(glued)
    heads = _heads(words)
    tests = (
        lambda tok, head: tok == head,
        lambda tok, head: _near_spelling(tok, head),
        lambda tok, head: tok in _ALIASES.get(head, ()),
        lambda tok, head: head in _PEOPLE and tok in _PEOPLE,
    )
    for same in tests:
        for head in heads:
            spans = [(i, i + 1) for i in range(n) if same(sing[i], head)]
            if spans:
                return tuple(spans)
    return ()


@lru_cache(maxsize=16384)
def tokens(sentence: str) -> tuple[str, ...]:
    """`tokenize`, cached."""
    return tuple(tokenize(sentence))  # captions repeat a lot (VSDv1 has ~30% duplicates)


def names_mentioned(sentence: str, subject: str, object: str) -> int:  # noqa: A002
    """How many of the two names (0, 1, 2) the sentence mentions, as `find_mentions` matches them."""
    toks = tokens(sentence)
    return bool(_mentions(toks, subject)) + bool(_mentions(toks, object))
