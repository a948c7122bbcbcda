"""What every refiner takes and returns, and the guarded selection they share.

A refiner proposes candidate rewrites per sentence (`_candidates`); this base runs them through
the guardrail, keeps the first that passes (and does not repeat an earlier sentence of the same
group), and otherwise keeps the original with a reason. So each backend only says how it
generates, and no backend can bypass the guardrail or lose an item: `refine` returns exactly one
outcome per item, in order.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from vsd.refine.guardrail import check_rewrite

STATUSES = ("refined", "partial", "kept_original", "skipped")


@dataclass
class RefineItem:
    """The descriptions of one annotation row (task 2 and/or task 3 sentences) and what they are about.

    ``subject``/``object`` are empty at scene level; ``relation`` is the task-1 label, if any.
    """

    subject: str
    object: str
    relation: str | None
    sentences: list[str]


@dataclass
class RefineOutcome:
    """The refined sentences and why any original was kept or dropped (one reason per sentence).

    ``origins[k]``: the index of the input sentence that ``sentences[k]`` came from (a dropped repeat
    shifts the rest), so who wrote each input sentence follows it through refinement."""

    sentences: list[str]
    status: str
    reasons: list[str] = field(default_factory=list)
    origins: list[int] | None = None

    def origin(self, k: int) -> int:
        return self.origins[k] if self.origins is not None else k


@dataclass(frozen=True)
class RewriteRequest:
    """One sentence to rewrite, with the item context the prompt and the guardrail need."""

    item: int
    index: int
    sentence: str
    subject: str
    object: str
    relation: str | None


def dedupe_key(sentence: str) -> str:
    """Sentences that differ only in case, spacing or punctuation count as the same."""
    return " ".join(re.findall(r"[a-z0-9']+", sentence.lower()))


def batched(seq: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


class Refiner(ABC):
    """``refine(items)`` -> one outcome per item, same order; ``close()`` frees models/engines."""

    @abstractmethod
    def refine(self, items: list[RefineItem]) -> list[RefineOutcome]: ...

    def close(self) -> None:  # noqa: B027 - a default, not an abstract method
        """Release the model or engine; the default holds nothing."""

    def __enter__(self) -> Refiner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class OffRefiner(Refiner):
    """``mode: off``: descriptions pass through untouched, marked skipped."""

    def refine(self, items: list[RefineItem]) -> list[RefineOutcome]:
        return [
            RefineOutcome(
                list(item.sentences),
                "skipped",
                ["refinement is off (refine.mode=off)"],
                list(range(len(item.sentences))),
            )
            for item in items
        ]


class GuardedRefiner(Refiner):
    """Candidates from a backend, filtered through the guardrail; subclasses implement `_candidates`."""

    batch_size: int = 16
    # Rules mode cannot vary wording, so a repeated sentence is removed; an LLM instead gets the
    # chance to produce a different variant and otherwise the original stays.
    drop_duplicates: bool = False

    @abstractmethod
    def _candidates(self, requests: Sequence[RewriteRequest]) -> list[list[str]]:
        """Candidate rewrites for each request (same order, any number each, best first)."""

    def refine(self, items: list[RefineItem]) -> list[RefineOutcome]:
        requests = [
            RewriteRequest(i, j, s, item.subject or "", item.object or "", item.relation)
            for i, item in enumerate(items)
            for j, s in enumerate(item.sentences)
            if s and s.strip()
        ]
        candidates: dict[tuple[int, int], list[str]] = {}
        for chunk in batched(requests, self.batch_size):
            answers = self._candidates(chunk)
            if len(answers) != len(chunk):
                raise RuntimeError(f"{type(self).__name__}: {len(answers)} answers for {len(chunk)} requests")
            for request, answer in zip(chunk, answers):
                candidates[(request.item, request.index)] = list(answer)
        return [self._choose(i, item, candidates) for i, item in enumerate(items)]

    def _choose(
        self, i: int, item: RefineItem, candidates: dict[tuple[int, int], list[str]]
    ) -> RefineOutcome:
        if not any(s and s.strip() for s in item.sentences):
            return RefineOutcome(
                list(item.sentences), "skipped", ["no sentences to refine"], list(range(len(item.sentences)))
            )
        out: list[str] = []
        origins: list[int] = []
        seen: dict[str, int] = {}  # dedupe key -> 1-based number of the input sentence it came from
        reasons: list[str] = []
        changed = kept = 0
        for j, original in enumerate(item.sentences):
            number = j + 1
            if not original or not original.strip():
                out.append(original)
                origins.append(j)
                kept += 1
                reasons.append(f"sentence {number}: empty, nothing to refine")
                continue
            accepted, first_reason, rejected = None, None, 0
            for cand in candidates.get((i, j), []):
                why = check_rewrite(original, cand, item.subject, item.object, item.relation)
                if why is None and dedupe_key(cand) in seen:
                    why = f"rewrite repeats sentence {seen[dedupe_key(cand)]}"
                if why is None:
                    accepted = cand
                    break
                first_reason = first_reason or why
                rejected += 1
            if accepted is not None:
                out.append(accepted)
                origins.append(j)
                seen.setdefault(dedupe_key(accepted), number)
                changed += 1
                continue
            if self.drop_duplicates and dedupe_key(original) in seen:
                reasons.append(f"sentence {number}: repeats sentence {seen[dedupe_key(original)]}, dropped")
                changed += 1
                continue
            out.append(original)
            origins.append(j)
            seen.setdefault(dedupe_key(original), number)
            kept += 1
            if first_reason is None:
                first_reason = "no rewrite was generated"
            elif rejected > 1:
                first_reason += f" ({rejected} variants rejected)"
            reasons.append(f"sentence {number}: {first_reason}")
        status = "refined" if kept == 0 else ("kept_original" if changed == 0 else "partial")
        return RefineOutcome(out, status, reasons, origins)
