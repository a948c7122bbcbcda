"""The guardrail: a rewrite replaces a description only if it says the same thing.

An LLM asked for "fluent and diverse" wording will sometimes drop an object, flip left and right,
add a "not", or echo its instructions. Refined text is training data for our users, so a rewrite
is accepted only when it still names the subject and object, states the same relation (parsed
with `vsd.relations.parse_relation`), and looks like one plain sentence; otherwise the original
stays and the reason is recorded. Checks are deliberately strict: a rejected good rewrite costs a
little diversity, an accepted wrong one corrupts a label.
"""

from __future__ import annotations

import re

from vsd.relations import parse_relation

MIN_WORDS = 3
MAX_CHARS = 400

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_ARTICLES = {"a", "an", "the", "some"}

# Chat-template and role debris that a model emits when generation runs past its turn.
_MARKUP = re.compile(
    r"<\|[^|>]*\|>|</?s>|<unk>|<pad>|<image>|\[/?INST\]|<<\/?SYS>>|"
    r"(?:^|\s)(?:USER|ASSISTANT|SYSTEM|Human|Assistant|System|user|assistant|system)\s*:",
)
# Phrases of an answer about the task rather than a description: instruction echoes, refusals,
# prompt injection. Flagged only when the original does not contain them itself.
_ECHOES = (
    "rewrite",
    "rewritten",
    "paraphrase",
    "sentence:",
    "instruction",
    "ignore previous",
    "ignore all",
    "as an ai",
    "language model",
    "i'm sorry",
    "i am sorry",
    "i cannot",
    "i can't",
    "here is",
    "here's",
    "sure,",
    "certainly",
    "answer:",
    "prompt",
    "do not add",
    "keep the",
)
_NEGATIONS = {"not", "no", "never", "neither", "nor", "without", "nowhere", "none", "nothing"}

_IRREGULAR_PLURALS = {
    "man": "men",
    "woman": "women",
    "person": "people",
    "child": "children",
    "foot": "feet",
    "tooth": "teeth",
    "mouse": "mice",
    "goose": "geese",
    "ox": "oxen",
    "sheep": "sheep",
    "fish": "fish",
    "deer": "deer",
}
_IRREGULAR_SINGULARS = {plural: single for single, plural in _IRREGULAR_PLURALS.items()}


def words(text: str) -> list[str]:
    """Lower-case word tokens (contractions like ``isn't`` stay one token)."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def head_noun(name: str) -> str | None:
    """The last word of a name ('red dining table' -> 'table'), which is what sentences repeat."""
    tokens = [w for w in words(name) if w not in _ARTICLES]
    return tokens[-1] if tokens else None


def noun_forms(noun: str) -> set[str]:
    """Singular and plural spellings of ``noun``, so 'cups' still names the 'cup'."""
    forms = {noun, noun + "s", noun + "es"}
    if noun in _IRREGULAR_PLURALS:
        forms.add(_IRREGULAR_PLURALS[noun])
    if noun in _IRREGULAR_SINGULARS:
        forms.add(_IRREGULAR_SINGULARS[noun])
    if noun.endswith("y") and len(noun) > 2:
        forms.add(noun[:-1] + "ies")
    if noun.endswith("ies"):
        forms.add(noun[:-3] + "y")
    if noun.endswith("fe"):
        forms.add(noun[:-2] + "ves")
    elif noun.endswith("f"):
        forms.add(noun[:-1] + "ves")
    if noun.endswith("ves"):
        forms.update({noun[:-3] + "f", noun[:-3] + "fe"})
    if noun.endswith("es"):
        forms.add(noun[:-2])
    if noun.endswith("s") and len(noun) > 3:
        forms.add(noun[:-1])
    return forms


def names(text_words: list[str], name: str | None) -> bool:
    """Whether the sentence mentions ``name`` by its head noun (any number)."""
    head = head_noun(name or "")
    return head is not None and not noun_forms(head).isdisjoint(text_words)


def _relation(sentence: str, subject: str | None, object: str | None) -> str | None:
    if subject and object:
        return parse_relation(sentence, subject, object)
    return parse_relation(sentence)


def check_rewrite(
    original: str, rewrite: str, subject: str | None, object: str | None, relation: str | None
) -> str | None:
    """Why ``rewrite`` may not replace ``original``, or None when it may.

    ``relation`` is the item's label, used only when the original's own relation cannot be parsed.
    Names are required only where the original used them ("still names"), so scene-level items
    (no pair) are checked on form and relation alone.
    """
    text = (rewrite or "").strip()
    if not text:
        return "rewrite is empty"
    if "\n" in text or "\r" in text:
        return "rewrite spans several lines"
    markup = _MARKUP.search(text)
    if markup and not _MARKUP.search(original):
        return f"rewrite contains chat markup {markup.group(0).strip()!r}"
    low, orig_low = text.lower().replace("\u2019", "'"), original.lower().replace("\u2019", "'")
    for echo in _ECHOES:
        pattern = r"\b" + re.escape(echo)  # "there is" must not read as "here is"
        if re.search(pattern, low) and not re.search(pattern, orig_low):
            return f"rewrite echoes the instructions ({echo!r})"
    if len(text) > MAX_CHARS:
        return f"rewrite is too long ({len(text)} characters)"
    new_words, old_words = words(text), words(original)
    counts = f"{len(new_words)} word{'s' if len(new_words) != 1 else ''}, the original {len(old_words)}"
    if len(new_words) > 2 * len(old_words) + 8:
        return f"rewrite is too long ({counts})"
    if len(new_words) < max(MIN_WORDS, len(old_words) // 3):
        return f"rewrite is too short ({counts})"
    for role, name in (("subject", subject), ("object", object)):
        if names(old_words, name) and not names(new_words, name):
            return f"rewrite drops the {role} {name!r}"
    added = sorted(
        {w for w in new_words if w in _NEGATIONS or w.endswith("n't")}
        - {w for w in old_words if w in _NEGATIONS or w.endswith("n't")}
    )
    if added:
        return f"rewrite adds a negation ({added[0]!r})"
    stated = _relation(original, subject, object)
    expected = stated or relation
    if expected is None:
        return None
    got = _relation(text, subject, object)
    if got is None:
        if stated is not None:
            return f"rewrite states no clear relation, the original says {stated!r}"
        return None
    if got != expected:
        return f"rewrite says {got!r}, the original {expected!r}"
    return None
