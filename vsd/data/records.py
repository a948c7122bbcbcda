"""One VSD triple with everything the later jobs need: names, relation, boxes, captions, image.

The readers (VSD JSON, synthetic scenes) produce these and the instruction builder consumes them,
so the VSD file layout ([ymin, ymax, xmin, xmax] pixels, captions per record) is decoded once here
and nowhere else. ``record_id`` equals the annotation ``row_id`` of the same pair so evaluation can
join predictions to references on it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")


def clean_caption(text: str) -> str:
    """Collapse whitespace and drop the space VSD puts before punctuation (``bed .`` -> ``bed.``).

    Case and wording are kept: captions are references for the metrics, not to be rewritten."""
    return _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", str(text)).strip())


def dedupe(texts: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Cleaned, non-empty texts without duplicates (case-insensitive), first occurrence order kept."""
    seen: set[str] = set()
    out: list[str] = []
    for text in texts:
        cleaned = clean_caption(text)
        key = cleaned.lower().rstrip(".")
        if cleaned and key not in seen:
            seen.add(key)
            out.append(cleaned)
    return tuple(out)


@dataclass(frozen=True)
class VSDRecord:
    """One (subject, relation, object) triple of one image, with all captions of its record.

    ``subject_box``/``object_box`` are normalised ``[x0, y0, x1, y1]``; they are ``None`` when the
    image size is unknown (VSD files carry no image size, so without the images we cannot normalise
    honestly). ``*_box_px`` keep the VSD boxes exactly as given (``[ymin, ymax, xmin, xmax]`` px).
    ``record_index`` is the record's position in the VSDv1 file (the VSDv2 file for a triple only
    VSDv2 has). ``captions`` are the record's VSDv1 captions (they describe the image, so every
    triple of a record shares them); ``caption_v2`` is the VSDv2 sentence of this triple, preferring
    one that is not a copy of a VSDv1 caption; ``captions_v2`` all VSDv2 captions of the triple.
    """

    dataset: str
    img_id: str
    record_index: int
    triple_index: int
    subject: str
    object: str
    relation: str
    subject_box_px: tuple[float, float, float, float]
    object_box_px: tuple[float, float, float, float]
    subject_box: tuple[float, float, float, float] | None = None
    object_box: tuple[float, float, float, float] | None = None
    width: int | None = None
    height: int | None = None
    captions: tuple[str, ...] = ()
    caption_v2: str | None = None
    image: str | None = None
    captions_v2: tuple[str, ...] = field(default=())

    @property
    def record_id(self) -> str:
        return f"{self.img_id}-p{self.triple_index}"

    @property
    def references(self) -> tuple[str, ...]:
        """Every caption of the record (VSDv1 then VSDv2), deduplicated: the evaluation references."""
        return dedupe(
            list(self.captions) + ([self.caption_v2] if self.caption_v2 else []) + list(self.captions_v2)
        )

    def with_image(self, image: str | None, size: tuple[int, int] | None) -> VSDRecord:
        """This record with its image URI and size; the normalised boxes follow from the size."""
        from vsd.relations import vsd_box_to_xyxy  # here, so records stay importable on their own

        if size is None:
            return dataclasses.replace(
                self, image=image, width=None, height=None, subject_box=None, object_box=None
            )
        width, height = size
        return dataclasses.replace(
            self,
            image=image,
            width=width,
            height=height,
            subject_box=tuple(vsd_box_to_xyxy(list(self.subject_box_px), width, height)),
            object_box=tuple(vsd_box_to_xyxy(list(self.object_box_px), width, height)),
        )

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["record_id"] = self.record_id
        return out
