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

from functools import lru_cache

from vsd.relations.lexicon import (
    BOUNDARY,
    CLAUSE_LEAD,
    DETERMINERS,
    EACH_OTHER,
    NEGATION,
    NP_BREAK,
    PRONOUNS,
    STRONG_VERBS,
    is_verb,
)
from vsd.relations.mentions import Span, find_mentions, tokens
from vsd.relations.phrases import Occurrence, find_relations
from vsd.relations.vocabulary import INVERSE

# --------------------------------------------------------------------------------------------
# Clause rules
# --------------------------------------------------------------------------------------------

_NEG, _AMBIG = "<negated>", "<ambiguous>"
_MAX_PAIRS = 64  # a runaway generation repeating the names must not cost quadratic time
_Found = tuple[Occurrence, bool]  # a phrase, and whether the name found is its left argument


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

    def __init__(self, toks: list[str], occs: list[Occurrence]):
        self.toks, self.occs = toks, occs

    def _clause_start(self, i: int) -> int:
        j = i - 1
        while j >= 0 and self.toks[j] not in BOUNDARY:
            j -= 1
        return j + 1

    def _is_clause_subject(self, span: Span) -> bool:
        """Nothing relational precedes the mention in its clause (so it heads the clause)."""
        start = self._clause_start(span[0])
        return not any(start <= o.start < span[0] and not o.dangling for o in self.occs)

    def _np_reaches(self, end: int, target: Span, limit: int = 8) -> bool:
        """Only noun-phrase filler up to the target: articles, adjectives, 'of', and 'and' when it
        joins nouns ('under the plate and bowl'), not clauses ('on the mat and the dog is...')."""
        gap = self.toks[end : target[0]]
        if len(gap) > limit:
            return False
        if any(t in NP_BREAK and t != "and" for t in gap):
            return False
        if "and" in gap:
            after = self.toks[target[1] : target[1] + 1]
            return not (after and is_verb(after[0]))
        return True

    def _coordinated(self, occ: Occurrence) -> bool:
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
        if any(t in NEGATION for t in self.toks[lo:hi]):
            return True
        first = min(left[0], right[0])  # "there is no cup on the table"
        return first >= 2 and self.toks[first - 1] == "no" and self.toks[first - 2] in STRONG_VERBS

    def between(self, left: Span, right: Span) -> Occurrence | str | None:
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
        mid = _drop_asides(self.toks[left[1] : occ.start])
        if self._coordinated(occ) or "either" in mid:
            return _AMBIG
        side = self.toks[right[1] : right[1] + 2]
        if occ.end - occ.start == 1 and occ.forward == "on" and side in (["'s", "left"], ["'s", "right"]):
            rel = f"to the {side[1]} of"  # "on the girl's right"
            occ = Occurrence(occ.start, occ.end, rel, INVERSE[rel], False, occ.end)
        verbs = [i for i, t in enumerate(mid) if is_verb(t)]
        if verbs:
            # Verbs on both sides of a boundary: the left mention belongs to another clause.
            if any(t in BOUNDARY and verbs[0] < i < verbs[-1] for i, t in enumerate(mid)):
                return None
            if not self._is_clause_subject(left):
                return None
        elif any(t in BOUNDARY and t != "and" for t in mid):
            return None
        return occ

    def fronted(self, first: Span, second: Span) -> Occurrence | str | None:
        """'Behind the catcher is an umpire': REL first VERB second -> second REL first."""
        before = [o for o in self.occs if o.end <= first[0] and not o.dangling]
        if not before:
            return None
        occ = before[-1]
        lead = self.toks[self._clause_start(occ.start) : occ.start]
        if any(t not in CLAUSE_LEAD for t in lead) or not self._np_reaches(occ.end, first):
            return None
        mid = self.toks[first[1] : second[0]]
        verb = next((i for i, t in enumerate(mid) if t in STRONG_VERBS), None)
        if verb is None or any(t in BOUNDARY for t in mid[:verb]):
            return None
        after = first[1] + verb + 1
        if any(o.start >= after and o.end <= second[0] for o in self.occs):
            return None
        if not self._np_reaches(after, second) and "there" not in mid:
            return None
        if self._negated(first, second):
            return _NEG
        return occ

    def stranded(self, first: Span, second: Span) -> Occurrence | None:
        """'A table with a cup on it', 'a bench with snow underneath', 'the water the bird is
        standing on': first ... second REL (it|end) -> second REL first."""
        mid = self.toks[first[1] : second[0]]
        if any(is_verb(t) for t in mid) and not any(t in ("with", "has", "have", "had") for t in mid):
            return None
        for o in self.occs:
            if o.start < second[1]:
                continue
            if o.start - second[1] > 4 or any(t in BOUNDARY for t in self.toks[second[1] : o.start]):
                return None
            nxt = self.toks[o.end] if o.end < len(self.toks) else "."
            if nxt in PRONOUNS:
                return o
            # Stranded at the end: after 'with'/'has', or in a relative clause ('the water the bird...').
            joined = (
                any(t in ("with", "has", "have", "had") for t in mid) or not mid or mid[-1] in DETERMINERS
            )
            return o if (nxt in BOUNDARY or o.dangling) and joined else None
        return None

    def each_other(self, first: Span, second: Span) -> Occurrence | None:
        """'a toilet and a sink next to each other': symmetric relations only."""
        if "and" not in self.toks[first[1] : second[0]]:
            return None
        for o in self.occs:
            if o.start >= second[1] and o.forward is not None and o.forward == o.backward:
                tail = tuple(self.toks[o.end : o.end + 2])
                if any(tail[: len(e)] == e for e in EACH_OTHER):
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

    def predicate(self) -> Occurrence | None:
        """The main predicate: the first relation after the first verb, with only verbs and
        adverbs between ('is standing right behind')."""
        t = self.toks
        for v, tok in enumerate(t):
            if not is_verb(tok) or any(o.start <= v < o.end for o in self.occs):
                continue
            for o in self.occs:
                if o.start > v and not o.dangling:
                    gap = t[v + 1 : o.start]
                    if all(is_verb(g) or g in CLAUSE_LEAD or g.endswith("ly") for g in gap):
                        return o
                    break
            return None
        return None

    def about_one(self, spans: list[Span], is_subject: bool) -> str | None:
        """Relation involving the one name found; the other side is taken to be the other name
        under a word we do not know ('building' for 'house')."""
        if any(t in NEGATION for t in self.toks):
            return None
        found: list[_Found] = []
        pred = self.predicate()
        for sp in spans:
            if pred is not None:
                if sp[1] <= pred.start and isinstance(self.between(sp, (pred.end, pred.end + 1)), Occurrence):
                    found.append((pred, True))
                elif pred.end <= sp[0] and self._np_reaches(pred.end, sp):
                    found.append((pred, False))
        for sp in spans:
            for o in self.occs:
                if o.dangling:
                    continue
                if o.start == sp[1] and o.end < len(self.toks) and self.toks[o.end] not in BOUNDARY:
                    found.append((o, True))
                elif o.end <= sp[0] and o.start > 0 and self._np_reaches(o.end, sp, limit=4):
                    found.append((o, False))
        if not found:
            return None
        occ, name_left = found[0]
        return occ.forward if name_left == is_subject else occ.backward

    def stated(self) -> str | None:
        """The relation the sentence states, with no names to anchor it."""
        if any(t in NEGATION for t in self.toks):
            return None
        solid = [o for o in self.occs if not o.dangling and o.forward is not None]
        pred = self.predicate()
        if pred is not None and pred.forward is not None:
            return None if self._coordinated(pred) else pred.forward
        if solid and all(t in CLAUSE_LEAD - {"there", "is", "are"} for t in self.toks[: solid[0].start]):
            return solid[0].forward  # fronted: "behind the catcher is an umpire"
        rels = {o.forward for o in solid}
        return rels.pop() if len(rels) == 1 else None


def _usable(
    occs: list[Occurrence], s_spans: list[Span], o_spans: list[Span]
) -> tuple[list[Occurrence], list[Span], list[Span]]:
    """A name containing a relation word ('above ground pool') is a name, not a relation; a
    one-word mention inside a relation phrase ('front' in 'in front of') is not a mention."""
    multi = [sp for sp in s_spans + o_spans if sp[1] - sp[0] > 1]
    occs = [o for o in occs if not any(o.start < e and s < o.end for s, e in multi)]
    taken = {i for o in occs for i in range(o.start, o.end)}

    def keep(spans: list[Span]) -> list[Span]:
        return [sp for sp in spans if sp[1] - sp[0] > 1 or sp[0] not in taken]

    return occs, keep(s_spans), keep(o_spans)


@lru_cache(maxsize=16384)  # a pure function, and captions repeat
def parse_relation(sentence: str, subject: str | None = None, object: str | None = None) -> str | None:  # noqa: A002
    """The relation a sentence states, from `subject` to `object` when their names are given.

    ``None`` when the sentence states none, negates it, or is ambiguous (``above or below``).
    See this module's docstring for how the two objects are located in the sentence.
    """
    if not sentence:
        return None
    toks = list(tokens(sentence))
    occs = find_relations(toks)
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
