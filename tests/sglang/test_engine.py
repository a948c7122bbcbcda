"""``SGLangEngine`` with the real engine on the tiny export: 3 tasks, images, the relation regex,
several images per batch, a broken request among good ones — and the real engine's raw output has
exactly the shape the recording stand-in (tests/fixtures/sglang.py) returns."""

from __future__ import annotations

import base64
import dataclasses
import io
import logging

import pytest

from vsd.annotate.engines import EngineConfig, make_engine
from vsd.annotate.engines.base import EngineError, ImageRequest
from vsd.annotate.engines.prompting import chat_prompt, task_prompts
from vsd.annotate.engines.sglang import data_url
from vsd.relations import RELATIONS

MAX_NEW = 8


def _jpeg(seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def engine(tiny_sglang_dir):
    cfg = EngineConfig(
        kind="sglang", model=tiny_sglang_dir, device="cpu", dtype="bfloat16", max_new_tokens=MAX_NEW
    )
    eng = make_engine(cfg)
    yield eng
    eng.close()


def test_radix_cache_computes_each_image_once(engine, caplog):
    """3 tasks x 3 pairs of an image in one batch: the image's tokens are computed once (the engine's
    priming prefill) and all 9 prompts find them in SGLang's radix cache (cached_tokens), for each
    image; the batch's share is logged."""
    pairs = [("cup", "table"), ("dog", "sofa"), ("lamp", "bed")]
    reqs = [
        ImageRequest(f"cache{i}", _jpeg(100 + i), [p for s, o in pairs for p in task_prompts(s, o)])
        for i in range(2)
    ]
    before = dataclasses.replace(engine.cache)
    with caplog.at_level(logging.INFO, logger="vsd.annotate.engines.sglang"):
        engine.generate(reqs)
    assert engine.image_tokens == 16  # the tiny tower: (32 / 8)^2 patches
    # each image computed once (its priming prefill), all 9 of its prompts find it cached
    assert engine.cache.prompts - before.prompts == 20
    assert engine.cache.image_cached - before.image_cached == 18
    assert "the image cached in 18/20 prompts (90%)" in caplog.text


def test_three_tasks_on_several_images_per_batch(engine):
    reqs = [
        ImageRequest(f"img{i}", _jpeg(i), [p for s, o in pairs for p in task_prompts(s, o)])
        for i, pairs in enumerate([[("cup", "table")], [("dog", "sofa"), ("lamp", "bed")], [("car", "tree")]])
    ]
    results = engine.generate(reqs)
    assert [r.key for r in results] == ["img0", "img1", "img2"]
    assert [len(r.answers) for r in results] == [3, 6, 3]
    for req, res in zip(reqs, results):
        for prompt, ans in zip(req.prompts, res.answers):
            if prompt.choices is not None:  # the regex held: one of the 9, never cut off
                assert ans.text in RELATIONS and not ans.truncated and ans.scores is None
            else:
                assert isinstance(ans.text, str)
    # each image alone gets the same constrained choices: the batch kept requests apart
    alone = [engine.generate([r])[0] for r in reqs]
    assert [[a.text for a in r.answers if a.text in RELATIONS] for r in alone] == [
        [a.text for a in r.answers if a.text in RELATIONS] for r in results
    ]


def test_a_broken_request_fails_its_batch_and_alone_only_itself(engine):
    good = [ImageRequest(f"g{i}", _jpeg(10 + i), task_prompts("cup", "table", (1, 2))) for i in range(2)]
    bad = ImageRequest("bad", b"\xff\xd8\xff not really a jpeg", task_prompts("cup", "table", (1, 2)))
    with pytest.raises(
        EngineError,
        match=r"^sglang aborted a request of 'g0', 'bad', 'g1': Error while processing "
        r"image",
    ):
        engine.generate([good[0], bad, good[1]])
    assert [len(engine.generate([g])[0].answers) for g in good] == [2, 2]  # the engine still serves
    with pytest.raises(EngineError, match="'bad'"):
        engine.generate([bad])


def test_raw_outputs_have_the_shape_the_stand_in_returns(engine, tiny_sglang_dir):
    """What tests/fixtures/sglang.py's RecordingSGLang claims about sglang 0.5.23, checked here."""
    from transformers import AutoTokenizer

    eos = AutoTokenizer.from_pretrained(tiny_sglang_dir).eos_token_id
    raw = engine.engine  # the sglang.Engine itself
    prompt = chat_prompt(task_prompts("cup", "table", (1,))[0].text)
    [free, choice] = raw.generate(
        prompt=[prompt, prompt],
        image_data=[data_url(_jpeg(1))] * 2,
        sampling_params=[{"max_new_tokens": 3, "temperature": 0.0}, engine.sampling_params(tuple(RELATIONS))],
    )
    for out in (free, choice):
        assert {"text", "output_ids", "meta_info"} <= set(out)
        assert {"finish_reason", "prompt_tokens", "completion_tokens"} <= set(out["meta_info"])
    reason = free["meta_info"]["finish_reason"]
    if reason["type"] == "length":
        assert reason == {"type": "length", "length": 3} and len(free["output_ids"]) == 3
    assert choice["meta_info"]["finish_reason"] == {"type": "stop", "matched": eos}
    assert choice["output_ids"][-1] == eos and choice["text"].strip() in RELATIONS
    bare = base64.b64encode(_jpeg(1)).decode()  # no data: prefix -> taken for a file path
    with pytest.raises(FileNotFoundError):
        raw.generate(prompt=[prompt], image_data=[bare], sampling_params=[{"max_new_tokens": 2}])
    with pytest.raises(ValueError, match="longer than the model's context length"):
        raw.generate(
            prompt=[prompt + " x" * 3000],
            image_data=[data_url(_jpeg(1))],
            sampling_params=[{"max_new_tokens": 2}],
        )


def test_answers_cut_by_max_new_tokens_are_truncated(engine):
    [res] = engine.generate([ImageRequest("t", _jpeg(3), task_prompts("cup", "table", (2, 3)))])
    raw = engine.engine.generate(
        prompt=[chat_prompt(p.text) for p in task_prompts("cup", "table", (2, 3))],
        image_data=[data_url(_jpeg(3))] * 2,
        sampling_params=[{"temperature": 0.0, "max_new_tokens": MAX_NEW}] * 2,
    )
    assert [a.truncated for a in res.answers] == [
        o["meta_info"]["finish_reason"]["type"] == "length" for o in raw
    ]
    assert [a.text for a in res.answers] == [o["text"].strip() for o in raw]
