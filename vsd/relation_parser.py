"""Which of the 9 relations a sentence states, from a named subject to a named object.

No NLP model: VSD captions are short, regular English ("there is a cup on the table", "the man in
green is in front of the trees", "behind the catcher is an umpire"), so a tokeniser, a phrase trie
(longest match wins, so "in front of" is never "in"), head-noun matching of the two names and a few
clause rules recover the relation fast enough to score every generated sentence.

The rules, tried for each (subject mention, object mention) pair, closest pair first:
1. *between*: ``A ... REL ... B`` — REL is the last relation phrase before B and only articles,
   adjectives and ``of``-phrases separate it from B. If a verb stands between A and REL the
   relation is predicated of the clause's subject, so A must be that subject (nothing relational
   before it in its clause): in "the ball in front of the ship is in the water" the ball, not the
   ship, is in the water.
2. *fronted*: ``REL B (is|are|sits...) A`` — "behind the catcher is an umpire".
3. *stranded*: ``B with/has A REL it``, ``B with A REL.`` — "a table with a cup on it",
   "a bench with snow underneath", "the water the bird stands on".
4. *each other*: ``A and B next to each other``.
A relation read from the object's side is turned round (`INVERSE`, or the phrase's own reverse:
"the man wearing a hat" is man ``in`` hat, hat ``on`` man). Negation between the two names, or two
relations joined by ``or``/``and`` ("above or below"), give ``None``. When only one name occurs
(captions say "building" for a "house"), the relation the sentence predicates of that name, or the
one right before it, is used; when neither occurs, ``None``: the sentence is about something else.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from vsd.name_mentions import COLOURS, Span, find_mentions, tokens
from vsd.relations import INVERSE, SYNONYMS

# --------------------------------------------------------------------------------------------
# Word classes (small closed lists: captions use a narrow vocabulary)
# --------------------------------------------------------------------------------------------

_STRONG_VERBS = {
    "is", "are", "was", "were", "be", "been", "being", "am", "has", "have", "had", "sits", "sit",
    "sat", "stands", "stand", "stood", "lies", "lie", "lay", "lays", "hangs", "hang", "hung", "rests",
    "rest", "seems", "appears", "remains", "stays", "looks", "grows", "floats", "flies", "runs",
    "walks", "goes", "leans", "holds", "covers", "sleeps", "waits", "plays", "parks", "shows",
    "contains", "includes", "can", "could", "will", "would", "may", "might", "must", "should", "do",
    "does", "did", "rides", "swims", "hides", "lives",
}
# -ing / -ed words that are nouns or adjectives in captions.
_NOT_VERBS = {
    "building", "buildings", "ceiling", "clothing", "ring", "king", "thing", "things", "something",
    "nothing", "anything", "string", "wing", "wings", "swing", "evening", "morning", "railing",
    "painting", "awning", "siding", "icing", "frosting", "topping", "filling", "stuffing", "pudding",
    "sibling", "crossing", "parking", "landing", "opening", "ding", "spring", "sling", "bring",
    "red", "bed", "shed", "sled", "seed", "weed", "reed", "need", "speed", "feed", "tweed", "steed",
    "colored", "coloured", "striped", "checkered", "shaped", "haired", "sized", "pointed", "tiled",
    "framed", "wooded", "bearded", "tinted", "skinned", "legged", "sided", "handed", "eyed",
    "hundred", "lighting", "wiring", "flooring", "bedding", "seating", "housing",
}
_NEGATION = {"not", "never", "nor", "neither", "nothing", "none", "nobody", "nowhere"}
_BOUNDARY = {",", ";", ".", ":", "!", "?", "(", ")", "but", "while", "whereas", "and"}
#: Tokens that end the noun phrase after a relation: the object must come before any of these.
_NP_BREAK = _BOUNDARY | _STRONG_VERBS | {
    "/", "or", "with", "without", "which", "who", "whom", "whose", "where", "when", "at", "from",
    "for", "to", "through", "toward", "towards", "across", "during", "like", "as", "than", "not",
    "no", "holding", "eating", "using", "watching", "looking", "carrying",
}
_PRONOUNS = {"it", "them", "him", "her", "itself", "themselves"}
_EACH_OTHER = (("each", "other"), ("eachother",), ("one", "another"))
_CLAUSE_LEAD = {"and", "also", "just", "right", "directly", "immediately", "then", "further",
                "far", "slightly", "there", "is", "are", "way", "up", "down", "out"}
_DETERMINERS = {"the", "a", "an", "his", "her", "its", "their", "this", "that", "these", "those",
                "my", "our", "your", "one"}
_POSITIONS = {"left", "right", "middle", "center", "centre", "background", "foreground", "distance",
              "top", "bottom", "side", "corner", "front", "back", "edge", "hand", "upper", "lower",
              "far", "sky", "air", "picture", "image", "photo", "frame", "scene", "forefront"}
_POSITION_MODIFIERS = {"upper", "lower", "far", "top", "bottom", "front", "back", "left", "right",
                       "middle", "hand", "very", "same"}
_PASSIVE_BY = {"held", "worn", "made", "driven", "ridden", "drawn", "eaten", "hit", "caught",
               "thrown", "taken", "shot", "owned", "led", "built", "fed", "written", "seen", "given"}
_PARTICIPLES = _PASSIVE_BY | {"shown", "grown", "sewn", "hung", "laid", "set", "put", "kept", "spread",
                              "stuck", "lit", "sunk", "blown", "known", "found"}


@lru_cache(maxsize=65536)
def _is_verb(tok: str) -> bool:
    if tok in _STRONG_VERBS or tok in _PARTICIPLES:
        return True
    if tok in _NOT_VERBS or len(tok) < 5:
        return False
    return tok.endswith(("ing", "ed"))


# --------------------------------------------------------------------------------------------
# Relation phrases
# --------------------------------------------------------------------------------------------

#: Verb phrases that state a relation, with the reverse reading: "man wearing a hat" is man `in`
#: hat and hat `on` man; "forest full of trees" says nothing forward, and tree `in` forest back.
_VERB_PHRASES: dict[str, tuple[str | None, str | None]] = {
    **{v: ("in", "on") for v in ("wearing", "wears", "wore", "dressed in", "clad in")},
    **{v: (None, "in") for v in ("full of", "filled with", "containing", "contains")},
    **{f"{v} to": ("on", "under") for v in ("attached", "connected", "nailed", "taped", "glued", "stuck",
                                             "fixed", "pinned", "mounted", "tied", "affixed", "clipped")},
    "hanging from": ("under", "above"), "hangs from": ("under", "above"),
    # "branches covered in snow": the snow is above (VSD annotates it so), the branches under.
    **{f"covered {p}": ("under", "above") for p in ("in", "with", "by")},
    # "a suitcase on his left": the object is the pronoun (see `_Sentence.stranded`).
    **{f"{prep} {pron} {side}{tail}": (f"to the {side} of", f"to the {'right' if side == 'left' else 'left'} of")
       for prep in ("on", "to", "at") for pron in ("his", "her", "its", "their")
       for side in ("left", "right") for tail in ("", " side", " hand side")},
}
#: Phrases that may end without an object ("the pole on the left", "a car in front").
_DANGLING_PHRASES = {"on the left", "to the left", "on the right", "to the right", "in front",
                     "infront", "on top", "underneath", "below", "above", "inside", "behind", "beside",
                     "nearby"}
_ADVERB_ONLY = {"nearby", "near by", "close by"}  # adjectives after an article: "a nearby toy"


def _build_trie() -> dict:
    trie: dict = {}
    table = {p: (r, INVERSE[r]) for p, r in SYNONYMS.items()} | _VERB_PHRASES
    for phrase, readings in table.items():
        node = trie
        for w in phrase.split():
            node = node.setdefault(w, {})
        node[None] = (readings, phrase)
    return trie


_TRIE = _build_trie()


@dataclass(frozen=True)
class _Occ:
    """A relation phrase in the sentence, tokens [start, end). `forward` is the relation from the
    phrase's left argument to its right one, `backward` from right to left (``None``: not one of
    the 9). `dangling`: a location modifier ("in the middle") whose only object can be the
    position word ending at `dangle_end`."""

    start: int
    end: int
    forward: str | None
    backward: str | None
    dangling: bool
    dangle_end: int


def _find_relations(toks: list[str]) -> list[_Occ]:
    """Longest-match scan, left to right, non-overlapping."""
    occs: list[_Occ] = []
    i, n = 0, len(toks)
    while i < n:
        node, best, j = _TRIE, None, i
        while j < n and toks[j] in node:
            node = node[toks[j]]
            j += 1
            if None in node:
                best = (j, *node[None])
        if best is None:
            i += 1
            continue
        end, (forward, backward), phrase = best
        after = toks[end] if end < n else "."
        if phrase in _ADVERB_ONLY and i > 0 and toks[i - 1] in _DETERMINERS:
            i = end  # "a nearby toy": an adjective, not a relation
            continue
        if phrase in ("on the left", "on the right") and not (after in _BOUNDARY or after in _STRONG_VERBS):
            end, forward, backward, phrase = i + 1, "on", INVERSE["on"], "on"  # "on the right track"
        if phrase == "by" and i > 0 and (toks[i - 1] in _PASSIVE_BY or toks[i - 1].endswith("ed")):
            i = end  # "covered by snow", "held by a man": agent, not place
            continue
        dangling, dangle_end = _dangling(toks, end, phrase)
        occs.append(_Occ(i, end, forward, backward, dangling, dangle_end))
        i = end
    return occs


def _dangling(toks: list[str], end: int, phrase: str) -> tuple[bool, int]:
    if phrase.split()[1:2] in (["his"], ["her"], ["its"], ["their"]):
        return True, end
    if phrase in _DANGLING_PHRASES:
        return (end >= len(toks) or toks[end] in _BOUNDARY or toks[end] in _STRONG_VERBS), end
    if phrase not in ("in", "on", "at"):
        return False, end
    k = end
    if k < len(toks) and toks[k] in _DETERMINERS:
        k += 1
    last = None
    while k < len(toks) and (toks[k] in _POSITION_MODIFIERS or toks[k] in _POSITIONS):
        last = k
        k += 1
    if last is None or toks[last] not in _POSITIONS:
        return False, end
    if k < len(toks) and (toks[k] == "of" or not (toks[k] in _NP_BREAK or toks[k] in _TRIE or _is_verb(toks[k]))):
        return False, end  # "in the middle of the road", "on the top floor": a real object follows
    return True, last + 1


# --------------------------------------------------------------------------------------------
# Clause rules
# --------------------------------------------------------------------------------------------

_NEG, _AMBIG = "<negated>", "<ambiguous>"
_MAX_PAIRS = 64  # a runaway generation repeating the names must not cost quadratic time
_Found = tuple[_Occ, bool]  # a phrase, and whether the name found is its left argument


def _drop_asides(words: list[str]) -> list[str]:
    """Without comma-enclosed relative clauses: 'the dog, which is brown, is under the table'."""
    out, i = [], 0
    while i < len(words):
        if words[i] == "," and i + 1 < len(words) and words[i + 1] in ("which", "who", "that", "whose"):
            close = next((j for j in range(i + 1, len(words)) if words[j] == ","), None)
            if close is not None:
                i = close + 1
                continue
        out.append(words[i])
        i += 1
    return out


class _Sentence:
    """One tokenised sentence with its relation phrases, ready for pair queries."""

    def __init__(self, toks: list[str], occs: list[_Occ]):
        self.toks, self.occs = toks, occs

    def _clause_start(self, i: int) -> int:
        j = i - 1
        while j >= 0 and self.toks[j] not in _BOUNDARY:
            j -= 1
        return j + 1

    def _is_clause_subject(self, span: Span) -> bool:
        """Nothing relational precedes the mention in its clause (so it heads the clause)."""
        start = self._clause_start(span[0])
        return not any(start <= o.start < span[0] and not o.dangling for o in self.occs)

    def _np_reaches(self, end: int, target: Span, limit: int = 8) -> bool:
        """Only noun-phrase filler up to the target: articles, adjectives, 'of', and 'and' when it
        joins nouns ('under the plate and bowl'), not clauses ('on the mat and the dog is...')."""
        gap = self.toks[end:target[0]]
        if len(gap) > limit:
            return False
        if any(t in _NP_BREAK and t != "and" for t in gap):
            return False
        if "and" in gap:
            after = self.toks[target[1]:target[1] + 1]
            return not (after and _is_verb(after[0]))
        return True

    def _coordinated(self, occ: _Occ) -> bool:
        """'above or below', 'behind and to the left of': two relations for one pair."""
        t, joins = self.toks, ("or", "and", "/", "nor")
        if occ.start >= 2 and t[occ.start - 1] in joins:
            if any(o.end == occ.start - 1 and o.forward != occ.forward for o in self.occs):
                return True
        if occ.end + 1 < len(t) and t[occ.end] in joins:
            return any(o.start == occ.end + 1 and o.forward != occ.forward for o in self.occs)
        return False

    def _negated(self, left: Span, right: Span) -> bool:
        lo, hi = min(left[1], right[1]), max(left[0], right[0])
        if any(t in _NEGATION for t in self.toks[lo:hi]):
            return True
        first = min(left[0], right[0])  # "there is no cup on the table"
        return first >= 2 and self.toks[first - 1] == "no" and self.toks[first - 2] in _STRONG_VERBS

    def between(self, left: Span, right: Span) -> _Occ | str | None:
        """The phrase linking the left mention to the right one, stated between them."""
        inner = [o for o in self.occs if o.start >= left[1] and o.end <= right[0]]
        if not inner:
            return None
        occ = inner[-1]
        if occ.dangling and not (occ.end <= right[0] < occ.dangle_end):
            return None
        if not occ.dangling and not self._np_reaches(occ.end, right):
            return None
        if self._negated(left, right):
            return _NEG
        mid = _drop_asides(self.toks[left[1]:occ.start])
        if self._coordinated(occ) or "either" in mid:
            return _AMBIG
        side = self.toks[right[1]:right[1] + 2]
        if occ.end - occ.start == 1 and occ.forward == "on" and side in (["'s", "left"], ["'s", "right"]):
            rel = f"to the {side[1]} of"  # "on the girl's right"
            occ = _Occ(occ.start, occ.end, rel, INVERSE[rel], False, occ.end)
        verbs = [i for i, t in enumerate(mid) if _is_verb(t)]
        if verbs:
            # Verbs on both sides of a boundary: the left mention belongs to another clause.
            if any(t in _BOUNDARY and verbs[0] < i < verbs[-1] for i, t in enumerate(mid)):
                return None
            if not self._is_clause_subject(left):
                return None
        elif any(t in _BOUNDARY and t != "and" for t in mid):
            return None
        return occ

    def fronted(self, first: Span, second: Span) -> _Occ | str | None:
        """'Behind the catcher is an umpire': REL first VERB second -> second REL first."""
        before = [o for o in self.occs if o.end <= first[0] and not o.dangling]
        if not before:
            return None
        occ = before[-1]
        lead = self.toks[self._clause_start(occ.start):occ.start]
        if any(t not in _CLAUSE_LEAD for t in lead) or not self._np_reaches(occ.end, first):
            return None
        mid = self.toks[first[1]:second[0]]
        verb = next((i for i, t in enumerate(mid) if t in _STRONG_VERBS), None)
        if verb is None or any(t in _BOUNDARY for t in mid[:verb]):
            return None
        after = first[1] + verb + 1
        if any(o.start >= after and o.end <= second[0] for o in self.occs):
            return None
        if not self._np_reaches(after, second) and "there" not in mid:
            return None
        if self._negated(first, second):
            return _NEG
        return occ

    def stranded(self, first: Span, second: Span) -> _Occ | None:
        """'A table with a cup on it', 'a bench with snow underneath', 'the water the bird is
        standing on': first ... second REL (it|end) -> second REL first."""
        mid = self.toks[first[1]:second[0]]
        if any(_is_verb(t) for t in mid) and not any(t in ("with", "has", "have", "had") for t in mid):
            return None
        for o in self.occs:
            if o.start < second[1]:
                continue
            if o.start - second[1] > 4 or any(t in _BOUNDARY for t in self.toks[second[1]:o.start]):
                return None
            nxt = self.toks[o.end] if o.end < len(self.toks) else "."
            if nxt in _PRONOUNS:
                return o
            # Stranded at the end: after 'with'/'has', or in a relative clause ('the water the bird...').
            joined = any(t in ("with", "has", "have", "had") for t in mid) or not mid or mid[-1] in _DETERMINERS
            return o if (nxt in _BOUNDARY or o.dangling) and joined else None
        return None

    def each_other(self, first: Span, second: Span) -> _Occ | None:
        """'a toilet and a sink next to each other': symmetric relations only."""
        if "and" not in self.toks[first[1]:second[0]]:
            return None
        for o in self.occs:
            if o.start >= second[1] and o.forward is not None and o.forward == o.backward:
                tail = tuple(self.toks[o.end:o.end + 2])
                if any(tail[:len(e)] == e for e in _EACH_OTHER):
                    return o
        return None

    # ---- one pair of mentions ---------------------------------------------------------------

    def pair(self, s: Span, o: Span) -> str | None:
        """Relation from the subject mention `s` to the object mention `o` (or _NEG/_AMBIG)."""
        forward = s[1] <= o[0]
        a, b = (s, o) if forward else (o, s)
        # (rule, reads the phrase from a's side?)
        rules = ((self.between, True), (self.fronted, False), (self.stranded, False), (self.each_other, True))
        for rule, from_a in rules:
            found = rule(a, b)
            if found is None:
                continue
            if isinstance(found, str):
                return found
            from_subject = from_a == forward
            rel = found.forward if from_subject else found.backward
            if rel is not None:
                return rel
        return None

    # ---- one name, or none --------------------------------------------------------------------

    def predicate(self) -> _Occ | None:
        """The main predicate: the first relation after the first verb, with only verbs and
        adverbs between ('is standing right behind')."""
        t = self.toks
        for v, tok in enumerate(t):
            if not _is_verb(tok) or any(o.start <= v < o.end for o in self.occs):
                continue
            for o in self.occs:
                if o.start > v and not o.dangling:
                    gap = t[v + 1:o.start]
                    if all(_is_verb(g) or g in _CLAUSE_LEAD or g.endswith("ly") for g in gap):
                        return o
                    break
            return None
        return None

    def about_one(self, spans: list[Span], is_subject: bool) -> str | None:
        """Relation involving the one name found; the other side is taken to be the other name
        under a word we do not know ('building' for 'house')."""
        if any(t in _NEGATION for t in self.toks):
            return None
        found: list[_Found] = []
        pred = self.predicate()
        for sp in spans:
            if pred is not None:
                if sp[1] <= pred.start and isinstance(self.between(sp, (pred.end, pred.end + 1)), _Occ):
                    found.append((pred, True))
                elif pred.end <= sp[0] and self._np_reaches(pred.end, sp):
                    found.append((pred, False))
        for sp in spans:
            for o in self.occs:
                if o.dangling:
                    continue
                if o.start == sp[1] and o.end < len(self.toks) and self.toks[o.end] not in _BOUNDARY:
                    found.append((o, True))
                elif o.end <= sp[0] and o.start > 0 and self._np_reaches(o.end, sp, limit=4):
                    found.append((o, False))
        if not found:
            return None
        occ, name_left = found[0]
        return occ.forward if name_left == is_subject else occ.backward

    def stated(self) -> str | None:
        """The relation the sentence states, with no names to anchor it."""
        if any(t in _NEGATION for t in self.toks):
            return None
        solid = [o for o in self.occs if not o.dangling and o.forward is not None]
        pred = self.predicate()
        if pred is not None and pred.forward is not None:
            return None if self._coordinated(pred) else pred.forward
        if solid and all(t in _CLAUSE_LEAD - {"there", "is", "are"} for t in self.toks[:solid[0].start]):
            return solid[0].forward  # fronted: "behind the catcher is an umpire"
        rels = {o.forward for o in solid}
        return rels.pop() if len(rels) == 1 else None


def _usable(occs: list[_Occ], s_spans: list[Span], o_spans: list[Span]) -> tuple[list[_Occ], list[Span], list[Span]]:
    """A name containing a relation word ('above ground pool') is a name, not a relation; a
    one-word mention inside a relation phrase ('front' in 'in front of') is not a mention."""
    multi = [sp for sp in s_spans + o_spans if sp[1] - sp[0] > 1]
    occs = [o for o in occs if not any(o.start < e and s < o.end for s, e in multi)]
    taken = {i for o in occs for i in range(o.start, o.end)}

    def keep(spans: list[Span]) -> list[Span]:
        return [sp for sp in spans if sp[1] - sp[0] > 1 or sp[0] not in taken]

    return occs, keep(s_spans), keep(o_spans)


@lru_cache(maxsize=16384)
def parse_sentence(sentence: str, subject: str | None = None, object: str | None = None) -> str | None:  # noqa: A002
    """See `vsd.relations.parse_relation` (cached: a pure function, and captions repeat)."""
    if not sentence:
        return None
    toks = list(tokens(sentence))
    occs = _find_relations(toks)
    if not occs:
        return None
    if subject is None and object is None:
        return _Sentence(toks, occs).stated()
    s_spans = find_mentions(toks, subject) if subject else []
    o_spans = find_mentions(toks, object) if object else []
    occs, s_spans, o_spans = _usable(occs, s_spans, o_spans)
    sent = _Sentence(toks, occs)
    if s_spans and o_spans:
        pairs = [(s, o) for s in s_spans for o in o_spans if s[1] <= o[0] or o[1] <= s[0]]
        # Closest pair first; at equal distance the subject-first reading (same names: 'a guy in
        # front of another guy' is about the first guy).
        pairs.sort(key=lambda p: (max(p[1][0] - p[0][1], p[0][0] - p[1][1]), p[0][0] > p[1][0]))
        for s, o in pairs[:_MAX_PAIRS]:
            rel = sent.pair(s, o)
            if rel in (_NEG, _AMBIG):
                return None
            if rel is not None:
                return rel
        if pairs or s_spans != o_spans:
            return None
    if s_spans or o_spans:
        # One name found (or the same name for both with one mention: 'a boat next to another').
        return sent.about_one(s_spans or o_spans, is_subject=bool(s_spans))
    return None
