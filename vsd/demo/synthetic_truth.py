"""Ground truth of the synthetic scenes (`vsd.data.synthetic`) for detection: every drawn shape.

A scene draws its subject, its object and 0-2 distractors; each is a named shape (``red circle``)
and that name is what a detector must output, since it is the object's name in the task prompts.
`VOCABULARY` is every name the generator can draw (colour x shape), in a fixed order: the tiny
detector's label set and the open-vocabulary prompt for these scenes.
"""

from __future__ import annotations

from dataclasses import dataclass

from vsd.data.synthetic import COLORS, SHAPES, Scene, make_scene, render
from vsd.propose.boxes import Box
from vsd.relations import RELATIONS

VOCABULARY: tuple[str, ...] = tuple(f"{color} {kind}" for color in COLORS for kind in SHAPES)


@dataclass(frozen=True)
class TrueObject:
    label: str
    box: Box  # normalised xyxy


def scene_objects(scene: Scene) -> list[TrueObject]:
    """Subject, object, then distractors, with boxes normalised (the generator's pixel boxes are
    ``x1``/``y1``-exclusive, so ``x1 / width`` is the right edge)."""
    W, H = scene.width, scene.height
    return [
        TrueObject(s.name, (s.box[0] / W, s.box[1] / H, s.box[2] / W, s.box[3] / H))
        for s in (scene.subject, scene.object, *scene.distractors)
    ]


def scene_at(index: int, seed: int, size=64) -> Scene:
    """Scene ``index`` of a generated set (relations in turn, as `synthetic.generate` does)."""
    return make_scene(index, RELATIONS[index % len(RELATIONS)], seed, size)


def labelled_scenes(n: int, seed: int, size=64, start: int = 0):
    """``(image, scene, objects)`` for scenes ``start .. start+n-1`` of ``seed``: what a detector
    sees and what it should find, without writing files."""
    for i in range(start, start + n):
        scene = scene_at(i, seed, size)
        yield render(scene), scene, scene_objects(scene)
