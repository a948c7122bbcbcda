"""The engine protocol's bookkeeping: every request answered exactly once, config errors in one line."""

from __future__ import annotations

import pytest

from vsd.annotate.engines import EngineConfig
from vsd.annotate.engines.base import (
    Answer,
    EngineError,
    ImageRequest,
    ImageResult,
    Prompt,
    account,
    check_requests,
    image_bytes,
    pil_image,
)
from vsd.annotate.engines.prompting import chat_prompt, choice_regex
from vsd.config import ConfigError, from_dict
from vsd.relations import RELATIONS

P = [Prompt(2, "describe")]


def _reqs(*keys):
    return [ImageRequest(k, b"", P) for k in keys]


def test_account_orders_results_and_catches_lost_doubled_unknown_and_short():
    res = [ImageResult("b", [Answer("y")]), ImageResult("a", [Answer("x")])]
    assert [r.key for r in account(_reqs("a", "b"), res)] == ["a", "b"]
    with pytest.raises(EngineError, match="lost 1"):
        account(_reqs("a", "b"), res[:1])
    with pytest.raises(EngineError, match="twice"):
        account(_reqs("a", "b"), res + res[:1])
    with pytest.raises(EngineError, match="unknown"):
        account(_reqs("a"), res)
    with pytest.raises(EngineError, match="1 prompts but 0 answers"):
        account(_reqs("a"), [ImageResult("a", [])])
    with pytest.raises(EngineError, match="twice in one batch"):
        check_requests(_reqs("a", "a"))


def test_config_validation_is_one_line_naming_the_field():
    assert from_dict(EngineConfig, {"kind": "hf", "max_new_tokens": "12"}).max_new_tokens == 12
    for bad, field in [
        ({"kind": "vllm"}, "kind"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": -1}, "temperature"),
    ]:
        with pytest.raises(ConfigError, match=field):
            from_dict(EngineConfig, bad)


def test_template_and_choice_regex():
    import re

    assert chat_prompt("Where?") == "USER: <image>\nWhere? ASSISTANT:"
    rx = choice_regex(RELATIONS)
    assert all(re.fullmatch(rx, r) for r in RELATIONS) and not re.fullmatch(rx, "near")


def test_template_matches_the_checkpoints_chat_template(tiny_llava_dir):
    """Our string template is exactly what the processor's jinja template renders."""
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_llava_dir)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where is it?"}]}]
    assert proc.apply_chat_template(msgs, add_generation_prompt=True) == chat_prompt("Where is it?")


def test_images_round_trip_and_bad_bytes_name_the_request():
    from PIL import Image

    img = Image.new("RGB", (8, 8), "red")
    data = image_bytes(img)
    assert pil_image(data).size == (8, 8) and image_bytes(data) == data
    with pytest.raises(EngineError, match="'k9'"):
        pil_image(b"<html>", "k9")
