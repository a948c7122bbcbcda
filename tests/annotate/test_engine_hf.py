"""The hf engine against plain transformers, in fp32: sharing the image prefix must not change a
single greedy token or a choice score (1e-4), and every request comes back exactly once."""

from __future__ import annotations

import io

import pytest

torch = pytest.importorskip("torch")

from vsd.annotate.engines import EngineConfig, make_engine  # noqa: E402
from vsd.annotate.engines.base import EngineError, ImageRequest, Prompt  # noqa: E402
from vsd.annotate.engines.hf import HFEngine, HFOptions  # noqa: E402
from vsd.annotate.engines.prompting import chat_prompt, choice_answer, task_prompts  # noqa: E402
from vsd.relations import RELATIONS  # noqa: E402

MAX_NEW = 6
PAIRS = [("cup", "table"), ("red circle", "green square")]


def _jpeg(seed: int, size: int = 40) -> bytes:
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    arr = (torch.rand(size, size, 3, generator=g) * 255).to(torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def loaded(tiny_llava_dir):
    from vsd.model.loader import load_model

    return load_model(tiny_llava_dir, dtype="float32", device="cpu")


def _engine(loaded, device: str = "cpu", batch_size: int = 8, **hf) -> HFEngine:
    model, processor = loaded
    cfg = EngineConfig(
        kind="hf",
        dtype="float32",
        device=device,
        max_new_tokens=MAX_NEW,
        batch_size=batch_size,
        hf=HFOptions(**hf),
    )
    return make_engine(cfg, model=model, processor=processor)


def _requests(n_images: int = 2) -> list[ImageRequest]:
    reqs = []
    for i in range(n_images):
        prompts = [p for s, o in PAIRS[: 1 + i % 2] for p in task_prompts(s, o)]
        reqs.append(ImageRequest(f"img{i}", _jpeg(i), prompts))
    return reqs


def _reference(loaded, image: bytes, prompt: Prompt):
    """What independent, unshared transformers calls give for one prompt."""
    from PIL import Image

    model, processor = loaded
    img = Image.open(io.BytesIO(image)).convert("RGB")
    text = chat_prompt(prompt.text)
    enc = processor(images=img, text=text, return_tensors="pt")
    if prompt.choices is None:
        out = model.generate(**enc, max_new_tokens=MAX_NEW, do_sample=False)
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        eos = processor.tokenizer.eos_token_id
        return new[: new.index(eos)] if eos in new else new
    prompt_ids = enc["input_ids"][0].tolist()
    scores = []
    for c in prompt.choices:
        full = processor(images=img, text=text + choice_answer(c), return_tensors="pt")
        ids = torch.cat([full["input_ids"], torch.tensor([[processor.tokenizer.eos_token_id]])], dim=1)
        logp = torch.log_softmax(
            model(input_ids=ids, pixel_values=full["pixel_values"]).logits[0].float(), -1
        )
        seq = ids[0].tolist()
        b = next(i for i, (x, y) in enumerate(zip(seq, prompt_ids + [None] * len(seq))) if x != y)
        scores.append(sum(logp[x - 1, seq[x]].item() for x in range(b, len(seq))))
    return scores


def test_shared_prefix_matches_independent_transformers(loaded):
    engine = _engine(loaded, batch_size=2)
    reqs = _requests(2)  # 3 and 6 prompts: one step pads the first image's groups
    results = engine.generate(reqs)
    tok = loaded[1].tokenizer
    assert [r.key for r in results] == [r.key for r in reqs]
    for req, res in zip(reqs, results):
        assert len(res.answers) == len(req.prompts)
        for prompt, ans in zip(req.prompts, res.answers):
            ref = _reference(loaded, req.image, prompt)
            if prompt.choices is None:
                assert ans.scores is None
                assert ans.text == tok.decode(ref, skip_special_tokens=True).strip()
                assert ans.truncated == (len(ref) == MAX_NEW)  # no EOS within the budget
            else:
                assert not ans.truncated
                assert ans.text in RELATIONS
                assert ans.scores == pytest.approx(ref, abs=1e-4)
                assert ans.text == prompt.choices[max(range(len(ref)), key=ref.__getitem__)]


def test_per_prompt_budgets_and_forced_answer_starts_match_transformers(loaded):
    """A repair prompt: the answer's start is forced (the engine returns only the continuation) and
    each prompt decodes to its own budget, in one batch with prompts of other budgets."""
    from PIL import Image

    model, processor = loaded
    image = _jpeg(3)
    prompts = [
        Prompt(
            2,
            task_prompts("cup", "table", [2])[0].text,
            answer_prefix="The cup is on the table",
            max_new_tokens=3,
        ),
        Prompt(3, task_prompts("cup", "table", [3])[0].text, max_new_tokens=9),
        Prompt(2, task_prompts("cup", "table", [2])[0].text),
    ]  # the config's budget (MAX_NEW)
    [result] = _engine(loaded).generate([ImageRequest("img", image, prompts)])
    tok = processor.tokenizer
    for prompt, ans in zip(prompts, result.answers):
        text = chat_prompt(prompt.text) + (" " + prompt.answer_prefix if prompt.answer_prefix else "")
        enc = processor(images=Image.open(io.BytesIO(image)).convert("RGB"), text=text, return_tensors="pt")
        budget = prompt.max_new_tokens or MAX_NEW
        new = model.generate(**enc, max_new_tokens=budget, do_sample=False)[
            0, enc["input_ids"].shape[1] :
        ].tolist()
        ended = tok.eos_token_id in new
        ref = new[: new.index(tok.eos_token_id)] if ended else new
        assert ans.text == tok.decode(ref, skip_special_tokens=True).strip()
        assert ans.truncated == (not ended) and len(ref) <= budget


def test_unshared_baseline_gives_the_same_answers(loaded):
    reqs = _requests(2)
    shared = _engine(loaded, batch_size=4).generate(reqs)
    alone = _engine(loaded, batch_size=3, share_prefix=False).generate(reqs)
    for a, b in zip(shared, alone):
        assert [x.text for x in a.answers] == [x.text for x in b.answers]
        for x, y in zip(a.answers, b.answers):
            if x.scores is not None:
                assert x.scores == pytest.approx(y.scores, abs=1e-4)


def test_peft_adapter_is_applied(loaded):
    """A LoRA-wrapped model (random, non-zero adapter) answers like its own plain forward/generate."""
    from peft import LoraConfig, get_peft_model

    model, processor = loaded
    torch.manual_seed(1)
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)", init_lora_weights=False
    )
    peft_model = get_peft_model(model, lora).eval()
    try:
        wrapped = (peft_model, processor)
        req = _requests(1)[0]
        [res] = _engine(wrapped).generate([req])
        for prompt, ans in zip(req.prompts, res.answers):
            ref = _reference(wrapped, req.image, prompt)
            if prompt.choices is None:
                assert ans.text == processor.tokenizer.decode(ref, skip_special_tokens=True).strip()
            else:
                assert ans.scores == pytest.approx(ref, abs=1e-4)
        with peft_model.disable_adapter():  # the adapter really changes what the engine computes
            base = _engine(wrapped).generate([req])[0].answers[0].scores
        assert base != pytest.approx(res.answers[0].scores, abs=1e-3)
    finally:
        peft_model.unload()


def test_choice_is_always_one_of_the_options_and_custom_choices_work(loaded):
    engine = _engine(loaded)
    choices = ("yes", "no", "maybe so")
    req = ImageRequest(
        "k", _jpeg(7), [Prompt(9, "Is the cup on the table?", choices), Prompt(2, "Describe it.")]
    )
    [res] = engine.generate([req])
    assert res.answers[0].text in choices and len(res.answers[0].scores) == 3
    assert res.answers[0].scores == pytest.approx(_reference(loaded, req.image, req.prompts[0]), abs=1e-4)


def test_pil_images_empty_prompt_lists_and_errors(loaded):
    from PIL import Image

    engine = _engine(loaded)
    pil = Image.open(io.BytesIO(_jpeg(3)))
    out = engine.generate(
        [ImageRequest("a", pil, task_prompts("dog", "cat", (2,))), ImageRequest("b", _jpeg(4), [])]
    )
    assert [r.key for r in out] == ["a", "b"] and out[1].answers == [] and len(out[0].answers) == 1
    with pytest.raises(EngineError, match="twice"):
        engine.generate([ImageRequest("a", pil, []), ImageRequest("a", pil, [])])
    with pytest.raises(EngineError, match="cannot be decoded"):
        engine.generate([ImageRequest("bad", b"not a jpeg", task_prompts("dog", "cat", (2,)))])


def test_model_object_still_serves_plain_generate_after_the_engine(loaded):
    """Our attention is switched on only inside the engine's forwards."""
    model, _ = loaded
    _engine(loaded).generate(_requests(1))
    assert model.config.text_config._attn_implementation != "vsd_shared_prefix"


@pytest.mark.gpu
def test_cuda_graph_decode_and_flash_prefix_match_the_reference_paths(tiny_llava_dir):
    """On CUDA: graph replay == eager decode (fp32, exact tokens); the fused flash prefix kernel
    (bf16) agrees with the matmul prefix path."""
    from vsd.model.loader import load_model

    loaded = load_model(tiny_llava_dir, dtype="float32", device="cuda")
    reqs = _requests(3)
    eager = _engine(loaded, device="cuda", cuda_graph=False).generate(reqs)
    engine = _engine(loaded, device="cuda", cuda_graph=True)
    graphed = engine.generate(reqs)
    assert engine.graph_used
    for a, b in zip(eager, graphed):
        assert [x.text for x in a.answers] == [x.text for x in b.answers]
        for x, y in zip(a.answers, b.answers):
            if x.scores is not None:
                assert x.scores == pytest.approx(y.scores, abs=1e-4)

    model, processor = loaded
    model.to(torch.bfloat16)
    cfg = EngineConfig(kind="hf", dtype="bfloat16", device="cuda", max_new_tokens=MAX_NEW)
    flash = make_engine(cfg, model=model, processor=processor)
    assert flash.flash_prefix
    matmul = EngineConfig(
        kind="hf",
        dtype="bfloat16",
        device="cuda",
        max_new_tokens=MAX_NEW,
        hf=HFOptions(prefix_attention="matmul"),
    )
    plain = make_engine(matmul, model=model, processor=processor)
    assert not plain.flash_prefix
    for a, b in zip(flash.generate(reqs), plain.generate(reqs)):
        for x, y in zip(a.answers, b.answers):
            if x.scores is not None:
                assert x.scores == pytest.approx(y.scores, abs=0.1)


def test_phase_timings_are_recorded_only_when_configured(loaded):
    reqs = _requests(1)
    quiet = _engine(loaded)
    quiet.generate(reqs)
    assert quiet.timings == {}
    timed = _engine(loaded, timings=True)
    timed.generate(reqs)
    assert set(timed.timings) == {"tokenize", "prefill", "score", "decode"}
    assert all(t > 0 for t in timed.timings.values())


class _EosFirst(torch.nn.Module):
    """An output head whose favourite token is always EOS, then by turns a word and a line break:
    the model that ends task 3 after its first sentence, reduced to its habit."""

    def __init__(self, head, eos: int, word: int, newline: int):
        super().__init__()
        self.head, self.eos, self.word, self.newline, self.calls = head, eos, word, newline, 0

    def forward(self, hidden):
        logits = self.head(hidden)
        second = self.word if self.calls % 2 == 0 else self.newline
        self.calls += 1
        logits[..., second] = logits.max() + 1.0
        logits[..., self.eos] = logits.max() + 1.0
        return logits


def test_min_lines_masks_the_end_of_answer_until_that_many_lines_are_written(loaded):
    engine = _engine(loaded)
    tok = engine.tokenizer
    newline = next(i for i in tok("a\nb", add_special_tokens=False)["input_ids"] if "\n" in tok.decode([i]))
    word = tok("x", add_special_tokens=False)["input_ids"][-1]
    text = task_prompts("cup", "table", [3])[0].text

    def answers(min_lines: int):
        engine.lm_head = _EosFirst(head, engine.eos_id, word, newline)
        [result] = engine.generate(
            [ImageRequest("r", _jpeg(0), [Prompt(3, text, max_new_tokens=12, min_lines=min_lines)])]
        )
        return result.answers[0]

    head = engine.lm_head
    free = answers(0)
    assert free.text == "" and not free.truncated  # EOS at once: the habit
    floored = answers(3)  # EOS masked until two breaks are out and the third line has a word
    assert not floored.truncated and len(floored.text.splitlines()) == 3
    assert all(line.strip() == tok.decode([word]).strip() for line in floored.text.splitlines())
