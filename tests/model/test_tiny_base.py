"""The committed pretrained tiny base (`vsd/assets/tiny-vsd-base`) that `vsd demo` fine-tunes.

It must load through the project's loader like any LLaVA checkpoint, stay small enough to live in
git, and already ground the visual prompt: on fresh synthetic scenes (a seed it never saw) it must
pick the right relation caption far more often than chance (1/9).
"""

from __future__ import annotations

import json
import os

import pytest

import vsd

BASE = os.path.join(os.path.dirname(vsd.__file__), "assets", "tiny-vsd-base")


@pytest.fixture(scope="module")
def base():
    from vsd.model.loader import load_model

    return load_model(BASE, dtype="float32")


def test_is_a_small_safetensors_llava_checkpoint(base):
    model, processor = base
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert type(processor).__name__ == "LlavaProcessor"
    files = os.listdir(BASE)
    assert "model.safetensors" in files and not [f for f in files if f.endswith((".bin", ".pt", ".pth"))]
    assert sum(os.path.getsize(os.path.join(BASE, f)) for f in files) < 5_000_000
    cfg = model.config
    assert cfg.vision_config.image_size == 64 and cfg.vision_config.patch_size == 8
    assert cfg.image_seq_length == 64 == (64 // 8) ** 2
    assert (
        "RECIPE.md" in files
        and json.load(open(os.path.join(BASE, "pretrain_meta.json")))["final"]["accuracy"] > 0.9
    )


def test_chat_template_is_llava_15(base):
    _, processor = base
    from vsd.train.collator import conversation

    text = processor.apply_chat_template(conversation("Describe it.", "A cup."), tokenize=False)
    assert text == "USER: <image>\nDescribe it. ASSISTANT: A cup.</s>"


def test_grounds_relations_on_fresh_scenes(base):
    """Caption-level relation choice on 18 unseen scenes (2 per relation): chance is 2/18."""
    import io

    import torch
    from PIL import Image

    from vsd.data.synthetic import make_scene, render
    from vsd.data.visual_prompt import draw_visual_prompt
    from vsd.relations import RELATIONS
    from vsd.train.collator import LlavaCollator

    model, processor = base
    collate = LlavaCollator(processor, max_length=256)
    samples, gold = [], []
    for i in range(18):
        scene = make_scene(i, RELATIONS[i % 9], seed=4242, size=64)
        norm = lambda b: (b[0] / 64, b[1] / 64, b[2] / 64, b[3] / 64)  # noqa: E731
        drawn = draw_visual_prompt(render(scene), norm(scene.subject.box), norm(scene.object.box))
        buf = io.BytesIO()
        drawn.save(buf, format="JPEG", quality=90)  # as the instruction builder writes images
        image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        s, o = scene.subject.name, scene.object.name
        samples += [
            {
                "image": image,
                "prompt": f"Describe the {s} and the {o} in the image.",
                "answer": f"The {s} is {r} the {o}.",
            }
            for r in RELATIONS
        ]
        gold.append(scene.relation)
    batch = collate(samples)
    with torch.no_grad():
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values=batch["pixel_values"],
        ).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    tgt = batch["labels"][:, 1:]
    score = (logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (tgt != -100)).sum(-1)
    picked = [RELATIONS[int(k)] for k in score.view(18, 9).argmax(-1)]
    hits = sum(p == g for p, g in zip(picked, gold))
    assert hits >= 12, f"relation grounding {hits}/18 (chance 2/18): {list(zip(gold, picked))}"
