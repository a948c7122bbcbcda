"""The tiny checkpoints load through plain transformers, exactly like a hub LLaVA would."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from vsd.errors import VSDError
from vsd.model.tiny import build_tiny_llava

PROMPT = (
    "Based on the image, provide a concise textual description or phrase of the single spatial "
    "relationship between the two objects cup and table."
)


def _conversation(answer: str | None = None) -> list[dict]:
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    if answer is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return msgs


def test_tiny_llava_reloads_and_generates(tiny_llava_dir):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir).eval()
    processor = AutoProcessor.from_pretrained(tiny_llava_dir)
    assert type(processor).__name__ == "LlavaProcessor"
    prompt = processor.apply_chat_template(_conversation(), add_generation_prompt=True)
    assert prompt == f"USER: <image>\n{PROMPT} ASSISTANT:"
    enc = processor(text=prompt, images=Image.new("RGB", (50, 40), (200, 10, 10)), return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert (
        out.shape[1] == enc["input_ids"].shape[1] + 5 or out[0, -1].item() == processor.tokenizer.eos_token_id
    )
    assert isinstance(processor.tokenizer.decode(out[0, enc["input_ids"].shape[1] :]), str)


@pytest.mark.parametrize(
    "kwargs, expected", [({}, 16), ({"image_tokens": 36}, 36), ({"image_size": 48, "patch_size": 16}, 9)]
)
def test_processor_expands_image_token(tmp_path, kwargs, expected):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    path = build_tiny_llava(str(tmp_path / "m"), **kwargs)
    processor = AutoProcessor.from_pretrained(path)
    model = LlavaForConditionalGeneration.from_pretrained(path).eval()
    enc = processor(
        text="USER: <image>\nhello ASSISTANT:", images=Image.new("RGB", (64, 64)), return_tensors="pt"
    )
    assert (enc["input_ids"][0] == model.config.image_token_id).sum().item() == expected
    with torch.no_grad():  # the model agrees: the image features fill exactly those positions
        assert model(**enc).logits.shape[1] == enc["input_ids"].shape[1]


def test_576_image_tokens_variant(tmp_path):
    from transformers import AutoProcessor

    path = build_tiny_llava(str(tmp_path / "m"), image_tokens=576, patch_size=14)
    processor = AutoProcessor.from_pretrained(path)
    assert processor.image_processor.crop_size["height"] == 336
    enc = processor(text="<image>", images=Image.new("RGB", (10, 10)))
    assert enc["input_ids"][0].count(processor.tokenizer.convert_tokens_to_ids("<image>")) == 576


def test_chat_template_prompt_is_token_prefix_and_answer_masked(tiny_llava_dir):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_llava_dir)
    tok = processor.tokenizer
    full = processor.apply_chat_template(_conversation("The cup is on the table."))
    assert full == f"USER: <image>\n{PROMPT} ASSISTANT: The cup is on the table.</s>"
    prompt = processor.apply_chat_template(_conversation(), add_generation_prompt=True)
    p_ids, f_ids = tok(prompt)["input_ids"], tok(full)["input_ids"]
    assert p_ids[0] == tok.bos_token_id and f_ids[: len(p_ids)] == p_ids
    assert tok.decode(f_ids[len(p_ids) :]) == " The cup is on the table.</s>"
    masked = tok.apply_chat_template(
        _conversation("The cup is on the table."), return_dict=True, return_assistant_tokens_mask=True
    )
    answer = [i for i, keep in zip(masked["input_ids"], masked["assistant_masks"]) if keep]
    assert tok.decode(answer) == " The cup is on the table.</s>"  # {% generation %} marks the answer
    # byte-level: any text round-trips, nothing becomes <unk>
    text = "Ünïcode 🙂 zebra-crossing 1234"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_deterministic_given_seed(tmp_path):
    def digest(path: str) -> str:
        return hashlib.sha256(Path(path, "model.safetensors").read_bytes()).hexdigest()

    a = build_tiny_llava(str(tmp_path / "a"), seed=3)
    b = build_tiny_llava(str(tmp_path / "b"), seed=3)
    c = build_tiny_llava(str(tmp_path / "c"), seed=4)
    assert digest(a) == digest(b) != digest(c)
    assert Path(a, "tokenizer.json").read_bytes() == Path(b, "tokenizer.json").read_bytes()


def test_text_lm_reloads_and_generates(tiny_text_lm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_text_lm_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_text_lm_dir).eval()
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Rewrite: the cup is on the table."}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == "USER: Rewrite: the cup is on the table. ASSISTANT:"
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 1 and out.shape[1] > enc["input_ids"].shape[1]


def test_bad_sizes_are_one_line_errors(tmp_path):
    with pytest.raises(VSDError, match="square"):
        build_tiny_llava(str(tmp_path / "x"), image_tokens=50)
    with pytest.raises(VSDError, match="multiple"):
        build_tiny_llava(str(tmp_path / "y"), image_size=30, patch_size=8)
