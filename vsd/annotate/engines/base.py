"""The engine protocol: images in, one answer per prompt out, every request accounted for once.

A request is one image (already visual-prompted and resized by the preprocess stage) with all the
prompts asked about it — pairs × tasks — so an engine can prefill the image once per request group
(`hf`) or keep the group adjacent for its prefix cache (`sglang`). A prompt with ``choices`` is a
constrained choice (task 1): the answer is always one of the choices, never free text.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, Union

from vsd.errors import VSDError

if TYPE_CHECKING:  # PIL is only needed where images are decoded
    from PIL.Image import Image

ImageInput = Union[bytes, "Image"]


class EngineError(VSDError):
    """An engine broke its contract (lost, doubled or unknown results) or got an unusable request."""


DEFAULT_NEW_TOKENS = 64  # a free-text answer's budget when neither the prompt nor the config sets one


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One question about an image: ``text`` is the user turn (no template, no ``<image>``).

    ``answer_prefix``: the answer's forced start (the engine continues it and returns only the
    continuation); ``max_new_tokens``: this prompt's token budget (None: the engine config's);
    ``min_lines``: the answer may not end before it has this many lines -- task 3 is trained as
    three sentences, one per line, and a small model's end-of-answer after the first is the base's
    one-caption habit, not a choice of content; every word of every line is still the model's."""

    task: int
    text: str
    choices: tuple[str, ...] | None = None
    answer_prefix: str = ""
    max_new_tokens: int | None = None
    min_lines: int = 0


@dataclasses.dataclass(frozen=True)
class ImageRequest:
    """One image (JPEG bytes or a PIL image) and every prompt asked about it."""

    key: str
    image: ImageInput
    prompts: list[Prompt]


@dataclasses.dataclass(frozen=True)
class Answer:
    """``scores``: one log-likelihood per choice (choice prompts, where the engine scores), else None.
    ``truncated``: generation stopped at ``max_new_tokens`` before the model ended its answer."""

    text: str
    scores: list[float] | None = None
    truncated: bool = False


@dataclasses.dataclass(frozen=True)
class ImageResult:
    key: str
    answers: list[Answer]


class Engine(Protocol):
    name: str

    def generate(self, batch: list[ImageRequest]) -> list[ImageResult]: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- helpers for engines


def check_requests(batch: Sequence[ImageRequest]) -> None:
    """Refuse a batch whose keys repeat: results are matched to requests by key."""
    seen: set[str] = set()
    for req in batch:
        if req.key in seen:
            raise EngineError(f"request {req.key!r}: key appears twice in one batch")
        seen.add(req.key)
        for p in req.prompts:
            if p.choices is not None and not p.choices:
                raise EngineError(f"request {req.key!r}: task {p.task} has an empty choices list")


def account(batch: Sequence[ImageRequest], results: Sequence[ImageResult]) -> list[ImageResult]:
    """Results in request order, after checking that each request got exactly one result with one
    answer per prompt (an engine may answer out of order; it may not lose or double a row)."""
    by_key: dict[str, ImageResult] = {}
    for res in results:
        if res.key in by_key:
            raise EngineError(f"engine returned request {res.key!r} twice")
        by_key[res.key] = res
    wanted = {req.key for req in batch}
    unknown = sorted(set(by_key) - wanted)
    if unknown:
        raise EngineError(f"engine returned unknown request {unknown[0]!r}")
    missing = [req.key for req in batch if req.key not in by_key]
    if missing:
        raise EngineError(f"engine lost {len(missing)} request(s), first {missing[0]!r}")
    ordered = []
    for req in batch:
        res = by_key[req.key]
        if len(res.answers) != len(req.prompts):
            raise EngineError(
                f"request {req.key!r}: {len(req.prompts)} prompts but {len(res.answers)} answers"
            )
        ordered.append(res)
    return ordered


def image_bytes(image: ImageInput) -> bytes:
    """JPEG bytes of a request image (PIL images are encoded once, quality 95)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def pil_image(image: ImageInput, key: str = "?") -> Image:
    """An RGB PIL image from bytes or PIL; a clear error naming the request if it cannot decode."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (bytes, bytearray, memoryview)):
        try:
            img = Image.open(io.BytesIO(bytes(image)))
            img.load()
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise EngineError(f"request {key!r}: image cannot be decoded ({exc})") from None
        return img.convert("RGB")
    return image.convert("RGB")
