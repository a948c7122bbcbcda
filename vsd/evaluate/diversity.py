"""How varied a set of descriptions is: distinct-n over the set and self-BLEU within each answer.

Task 3 asks for three *diverse* descriptions. Caption metrics cannot see diversity (three copies of
the best sentence score as well as three different good ones), and the rules refiner only tidies,
so whether refinement adds or removes variety has to be measured on its own:

* ``distinct_2``: unique word bigrams / all word bigrams over every sentence of the variant
  (higher: less repetition across the corpus);
* ``self_bleu``: for each answer with at least two sentences, the mean BLEU-4 of each sentence
  against the answer's other sentences, averaged over answers (lower: the three sentences differ).

Words are lower-cased alphanumeric tokens; BLEU is smoothed (+1 on the n-gram counts of orders 2-4)
so short sentences do not collapse to 0.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence


def words(sentence: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", sentence.lower())


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def distinct_n(sentences: Sequence[str], n: int = 2) -> float | None:
    grams: Counter = Counter()
    for sentence in sentences:
        grams.update(_ngrams(words(sentence), n))
    total = sum(grams.values())
    return round(len(grams) / total, 4) if total else None


def bleu(hypothesis: str, references: Sequence[str], max_n: int = 4) -> float:
    """Sentence BLEU of ``hypothesis`` against ``references`` (clipped counts, brevity penalty
    against the closest reference length, add-one smoothing above unigrams)."""
    hyp = words(hypothesis)
    refs = [words(r) for r in references]
    if not hyp or not any(refs):
        return 0.0
    logs = 0.0
    for n in range(1, max_n + 1):
        counts = _ngrams(hyp, n)
        best: Counter = Counter()
        for ref in refs:
            best |= _ngrams(ref, n)
        match = sum(min(c, best[g]) for g, c in counts.items())
        total = max(sum(counts.values()), 0)
        smooth = 1 if n > 1 else 0
        if match + smooth == 0 or total + smooth == 0:
            return 0.0
        logs += math.log((match + smooth) / (total + smooth)) / max_n
    closest = min((len(r) for r in refs), key=lambda length: (abs(length - len(hyp)), length))
    penalty = 1.0 if len(hyp) > closest else math.exp(1 - closest / len(hyp))
    return penalty * math.exp(logs)


def self_bleu(answers: Sequence[Sequence[str]]) -> float | None:
    """Mean over answers (of two or more sentences) of each sentence's BLEU against the others."""
    scores = []
    for sentences in answers:
        kept = [s for s in sentences if words(s)]
        if len(kept) < 2:
            continue
        scores.append(sum(bleu(s, kept[:i] + kept[i + 1 :]) for i, s in enumerate(kept)) / len(kept))
    return round(sum(scores) / len(scores), 4) if scores else None


def diversity(answers: Sequence[Sequence[str]]) -> dict:
    """``{"distinct_2", "self_bleu", "answers"}`` for a list of answers (each a list of sentences)."""
    return {
        "distinct_2": distinct_n([s for a in answers for s in a], 2),
        "self_bleu": self_bleu(answers),
        "answers": len(answers),
    }
