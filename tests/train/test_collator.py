"""The collator: chat template, image-token expansion, answer-only labels, safe truncation."""

from __future__ import annotations

import pytest
from PIL import Image

from vsd.train.collator import IGNORE_INDEX, LlavaCollator, model_inputs


@pytest.fixture(scope="module")
def processor(tiny_llava_dir):
    from vsd.model.loader import load_processor

    return load_processor(tiny_llava_dir)


def _sample(answer: str, prompt: str = "Where is the red circle?", color=(255, 0, 0)) -> dict:
    return {"image": Image.new("RGB", (40, 30), color), "prompt": prompt, "answer": answer}


def _answer_text(processor, labels) -> str:
    return processor.tokenizer.decode([t for t in labels.tolist() if t != IGNORE_INDEX])


def test_labels_are_the_answer_only(processor):
    batch = LlavaCollator(processor, 256)([_sample("The cup is on the table."), _sample("on")])
    tok = processor.tokenizer
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["pixel_values"].shape[0] == 2
    for i, answer in enumerate(["The cup is on the table.", "on"]):
        assert _answer_text(processor, batch["labels"][i]).strip() == answer + tok.eos_token
    # Every image token, the prompt and the padding are masked.
    image_id = tok.convert_tokens_to_ids("<image>")
    assert (batch["labels"][batch["input_ids"] == image_id] == IGNORE_INDEX).all()
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    assert set(model_inputs(batch)) == {"input_ids", "attention_mask", "pixel_values"}


def test_image_tokens_match_the_model(processor, tiny_llava_dir):
    from transformers import AutoConfig

    batch = LlavaCollator(processor, 256)([_sample("on")])
    cfg = AutoConfig.from_pretrained(tiny_llava_dir)
    assert int((batch["input_ids"] == cfg.image_token_id).sum()) == cfg.image_seq_length


def test_truncation_cuts_the_answer_tail_not_the_image(processor):
    long_answer = " ".join(["the cup is on the table"] * 40)
    full = LlavaCollator(processor, 4096)([_sample(long_answer)])
    n_full = int(full["attention_mask"].sum())
    cut = LlavaCollator(processor, n_full - 10)([_sample(long_answer)])
    assert cut["num_truncated"] == 1 and cut["num_dropped"] == 0
    assert cut["input_ids"].shape[1] == n_full - 10
    assert (cut["input_ids"][0] == full["input_ids"][0, : n_full - 10]).all()  # same prefix: image intact
    kept = _answer_text(processor, cut["labels"][0])
    assert long_answer.startswith(kept.strip()) and len(kept.strip()) < len(long_answer)


def test_sample_whose_prompt_cannot_fit_is_flagged_and_keeps_its_image(processor):
    long_prompt = "Describe the scene. " * 30
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    batch = LlavaCollator(processor, 40)([_sample("on", prompt=long_prompt), _sample("on", prompt="Where?")])
    assert batch["num_dropped"] == 1
    assert batch["input_ids"].shape[1] <= 40
    assert (batch["labels"][0] == IGNORE_INDEX).all()  # contributes no loss, keeps the batch shape
    assert int((batch["input_ids"][0] == image_id).sum()) == int((batch["input_ids"][1] == image_id).sum())
    assert _answer_text(processor, batch["labels"][1]).strip().startswith("on")


def test_max_length_below_the_image_tokens_is_an_error(processor):
    with pytest.raises(ValueError, match="shorter than the image tokens"):
        LlavaCollator(processor, 8)([_sample("on")])
