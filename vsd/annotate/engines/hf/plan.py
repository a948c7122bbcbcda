"""Token planning: split one image's prompts into the shared prefix and what each prompt adds.

Every prompt about one image starts with the same tokens (BOS, ``USER: ``, the image); the longest
common prefix is prefilled once (``attention``), the rest becomes one row per prompt. A constrained
choice (task 1) becomes one *tree* row: the prompt's own tokens, then every choice's answer + EOS,
each choice seeing the prompt and itself only, so all choices are scored in one forward.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from vsd.annotate.engines.base import EngineError


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclasses.dataclass
class ChoiceRow:
    """A constrained-choice prompt as one tree row: trunk + each choice's own tokens."""

    index: int  # prompt index in its request
    trunk: list[int]  # tokens after the image prefix shared by all choices
    segments: list[list[int]]
    starts: list[int]  # first scored token of each choice, in the choice's full-sequence coordinates
    common: int  # full-sequence coordinate where segments start
    choices: tuple[str, ...]


@dataclasses.dataclass
class ImagePlan:
    """One image: its shared prefix (unexpanded ids, one image token) and what each prompt adds."""

    prefix: list[int]
    gen: list[tuple[int, list[int]]]  # (prompt index, suffix ids)
    choice: list[ChoiceRow]


def plan_image(
    prompt_ids: list[list[int]],
    option_ids: dict[int, list[list[int]]],
    image_token_id: int,
    choices: dict[int, tuple[str, ...]],
) -> ImagePlan:
    """Split one image's token sequences into the shared prefix and per-prompt suffixes.

    ``prompt_ids[i]``: prompt i's ids (BOS + template, one image token); ``option_ids[i][j]``: the
    same + choice j's answer + EOS for choice prompts. The prefix is their longest common prefix,
    cut so every row keeps at least the token whose logits predict its first answer token.
    """
    seqs = list(prompt_ids) + [o for opts in option_ids.values() for o in opts]
    cut = min(len(p) - 1 for p in prompt_ids)
    for i, opts in option_ids.items():
        cut = min(cut, *(_lcp(o, prompt_ids[i]) - 1 for o in opts))
    first = seqs[0]
    for s in seqs[1:]:
        cut = min(cut, _lcp(first, s))
    if image_token_id in first[cut:] or image_token_id not in first[:cut]:
        raise EngineError(
            "prompts must contain exactly one <image>, before any text that differs between them"
        )
    gen, choice = [], []
    for i, ids in enumerate(prompt_ids):
        if i not in option_ids:
            gen.append((i, ids[cut:]))
            continue
        opts = option_ids[i]
        common = min(_lcp(opts[0], o) for o in opts[1:]) if len(opts) > 1 else len(opts[0]) - 1
        common = min(common, min(_lcp(o, ids) for o in opts))
        choice.append(
            ChoiceRow(
                index=i,
                trunk=opts[0][cut:common],
                segments=[o[common:] for o in opts],
                starts=[_lcp(o, ids) for o in opts],
                common=common,
                choices=choices[i],
            )
        )
    return ImagePlan(prefix=first[:cut], gen=gen, choice=choice)
