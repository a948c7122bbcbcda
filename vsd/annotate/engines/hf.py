"""transformers LLaVA engine with one prefill of the image per request group.

All prompts about one image (pairs × tasks) share the tokens up to and including the image, so
the image's vision tower and its ~600-token prefix run ONCE per image; its keys/values are never
copied. The prompts' own tokens then run as rows of one batch whose attention reads the shared
prefix in place (a two-part attention, as in cascade / Hydragen attention):

* the prefix part: the queries of the G rows of image n are stacked into one query block of image
  n, so one batched matmul per image reads its prefix keys once for all its rows (no
  ``repeat_interleave``/``expand`` copy of the cache, which capped the batch of the naive attempt);
* the own part: each row against its own suffix + generated tokens (short, preallocated buffer);
* the two softmaxes are merged exactly with their log-sum-exps.

Task 1 (a prompt with ``choices``) is a constrained choice scored in ONE forward, never generated:
its row is ``prompt suffix + every choice + EOS`` packed with a tree mask (each choice sees the
prompt and itself, not the other choices), and the choice with the highest log-likelihood of
``" {choice}</s>"`` wins. Tasks 2/3 decode greedily (or sample) together, all images at once.

The equivalence with plain, independent ``model.generate`` / full forward passes is asserted in
fp32 by ``tests/annotate/test_engine_hf.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from vsd.annotate.engines.base import (Answer, EngineConfig, EngineError, ImageRequest, ImageResult, Prompt,
                                       account, check_requests, pil_image)
from vsd.annotate.engines.prompting import IMAGE_TOKEN, chat_prompt, choice_answer

log = logging.getLogger(__name__)

ATTN_NAME = "vsd_shared_prefix"
_NEG = float("-inf")


# --------------------------------------------------------------------------- shared-prefix attention

class SharedPrefixAttention:
    """Per-forward state read by the registered attention function (passed as ``vsd_ctx``).

    ``mode == "prefix"``: causal self-attention of the image prefixes; keys/values are kept.
    ``mode == "rows"``: rows (``group`` consecutive rows per image) attend to their image's kept
    prefix and to their own tokens, written into a preallocated buffer at column ``col``.
    """

    def __init__(self, n_layers: int):
        self.mode = "prefix"
        self.pre_k: list[Any] = [None] * n_layers
        self.pre_v: list[Any] = [None] * n_layers
        self.prefix_mask = None  # bool [N,1,P,P] where prefixes are padded, else None (plain causal)
        self.pre_bias = None  # additive [N,1,1,P]: -inf on prefix padding, else None
        self.group = 1
        self.capacity = 0
        self.col = 0
        self.own_bias = None  # additive [R,1,L,col+L]
        self.own_k: list[Any] = [None] * n_layers
        self.own_v: list[Any] = [None] * n_layers
        self.col_t = None  # device tensor [1]: static-shape mode (CUDA graphs) writes one token there
        self.flash = False  # prefix part through the fused flash kernel (CUDA, half precision, no padding)

    def start_rows(self, group: int, capacity: int) -> None:
        self.mode, self.group, self.capacity, self.col, self.col_t = "rows", group, capacity, 0, None
        self.own_k = [None] * len(self.own_k)
        self.own_v = [None] * len(self.own_v)

    def attend(self, layer: int, q, k, v, scaling: float):
        import torch
        import torch.nn.functional as F

        if self.mode == "prefix":
            # contiguous once, so every later matmul reads the prefix in place (no per-step copy)
            self.pre_k[layer], self.pre_v[layer] = k.contiguous(), v.contiguous()
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.prefix_mask,
                                                 is_causal=self.prefix_mask is None, scale=scaling,
                                                 enable_gqa=k.shape[1] != q.shape[1])
            return out.transpose(1, 2)

        R, H, L, D = q.shape
        Hkv = k.shape[1]
        rep = H // Hkv
        if self.own_k[layer] is None:  # zeros: unwritten columns are masked, and must not hold NaN
            self.own_k[layer] = k.new_zeros(R, Hkv, self.capacity, D)
            self.own_v[layer] = v.new_zeros(R, Hkv, self.capacity, D)
        if self.col_t is not None:  # static shapes: the column is a device tensor, the whole buffer is read
            self.own_k[layer].index_copy_(2, self.col_t, k)
            self.own_v[layer].index_copy_(2, self.col_t, v)
            k_own, v_own = self.own_k[layer], self.own_v[layer]
        else:
            c0, c1 = self.col, self.col + L
            self.own_k[layer][:, :, c0:c1] = k
            self.own_v[layer][:, :, c0:c1] = v
            k_own, v_own = self.own_k[layer][:, :, :c1], self.own_v[layer][:, :, :c1]

        # own part: [R, Hkv, rep*L, c1]
        q_own = q.reshape(R, Hkv, rep * L, D)
        bias = self.own_bias if rep == 1 else self.own_bias.repeat(1, 1, rep, 1)
        s = torch.matmul(q_own, k_own.transpose(-1, -2)).float() * scaling + bias
        lse_own = torch.logsumexp(s, dim=-1, keepdim=True)
        o_own = torch.matmul(torch.exp(s - lse_own).to(v.dtype), v_own).float()

        # prefix part: the G rows of image n form one query block against image n's prefix
        G = self.group
        N = R // G
        q_pre = q.reshape(N, G, Hkv, rep * L, D).transpose(1, 2).reshape(N, Hkv, G * rep * L, D)
        o_pre, lse_pre = prefix_attention(q_pre, self.pre_k[layer], self.pre_v[layer], scaling, self.pre_bias,
                                          flash=self.flash)
        o_pre = o_pre.reshape(N, Hkv, G, rep * L, D).transpose(1, 2).reshape(R, Hkv, rep * L, D)
        lse_pre = lse_pre.reshape(N, Hkv, G, rep * L, 1).transpose(1, 2).reshape(R, Hkv, rep * L, 1)

        w = torch.sigmoid(lse_pre - lse_own)  # share of the softmax mass that falls on the prefix
        out = o_own + w * (o_pre - o_own)
        return out.reshape(R, H, L, D).transpose(1, 2).to(q.dtype)


def prefix_attention(q, k, v, scaling: float, bias, *, flash: bool):
    """Softmax attention of q [B,H,M,D] over k/v [B,H,P,D] (+ additive bias [B,1,1,P]) and its
    log-sum-exp [B,H,M,1] (float32), which the merge with the rows' own part needs.

    ``flash``: one fused kernel (reads the prefix once, no score matrix in memory) via the flash
    op that also returns the log-sum-exp; only without bias, on CUDA in half precision."""
    import torch

    if flash and bias is None:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False, scale=scaling)[:2]
        return out.float(), lse.unsqueeze(-1)
    s = torch.matmul(q, k.transpose(-1, -2)).float() * scaling
    if bias is not None:
        s = s + bias
    lse = torch.logsumexp(s, dim=-1, keepdim=True)
    return torch.matmul(torch.exp(s - lse).to(v.dtype), v).float(), lse


def flash_prefix_ok(device, dtype) -> bool:
    """Whether the fused prefix kernel runs here and agrees with the reference path (checked once
    on small random tensors; any error or mismatch keeps the matmul path)."""
    import torch

    if os.environ.get("VSD_PREFIX_ATTENTION", "auto") == "matmul":
        return False
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return False
    try:
        g = torch.Generator(device=device).manual_seed(0)
        q, k, v = (torch.randn(2, 4, n, 64, device=device, generator=g).to(dtype) for n in (3, 50, 50))
        o1, l1 = prefix_attention(q, k, v, 0.125, None, flash=True)
        o2, l2 = prefix_attention(q, k, v, 0.125, None, flash=False)
        return bool(torch.allclose(o1, o2, atol=2e-2, rtol=2e-2) and torch.allclose(l1, l2, atol=2e-2, rtol=2e-2))
    except Exception as exc:  # noqa: BLE001 - no such kernel on this build/GPU: use the matmul path
        log.info("hf engine: flash prefix attention unavailable (%s)", exc)
        return False


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    ctx = kwargs.get("vsd_ctx")
    if ctx is None:  # anyone else's forward while ours is switched on: behave like sdpa
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                      dropout=dropout, **kwargs)
    return ctx.attend(module.layer_idx, query, key, value, scaling or query.shape[-1] ** -0.5), None


_registered = False


def _register() -> None:
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(ATTN_NAME, _attention)
        _registered = True


@contextlib.contextmanager
def _shared_attention(text_config) -> Iterator[None]:
    """Switch the language model to our attention for one forward (the vision tower keeps its own),
    and back, so the same model object still serves plain ``generate`` calls."""
    old = text_config._attn_implementation
    text_config._attn_implementation = ATTN_NAME
    try:
        yield
    finally:
        text_config._attn_implementation = old


# --------------------------------------------------------------------------- token plans

def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclasses.dataclass
class _Choice:
    """A constrained-choice prompt as one tree row: trunk + each choice's own tokens."""

    index: int  # prompt index in its request
    trunk: list[int]  # tokens after the image prefix shared by all choices
    segments: list[list[int]]
    starts: list[int]  # first scored token of each choice, in the choice's full-sequence coordinates
    common: int  # full-sequence coordinate where segments start
    choices: tuple[str, ...]


@dataclasses.dataclass
class _Plan:
    """One image: its shared prefix (unexpanded ids, one image token) and what each prompt adds."""

    prefix: list[int]
    gen: list[tuple[int, list[int]]]  # (prompt index, suffix ids)
    choice: list[_Choice]


def plan_image(prompt_ids: list[list[int]], option_ids: dict[int, list[list[int]]], image_token_id: int,
               choices: dict[int, tuple[str, ...]]) -> _Plan:
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
        raise EngineError("prompts must contain exactly one <image>, before any text that differs between them")
    gen, choice = [], []
    for i, ids in enumerate(prompt_ids):
        if i not in option_ids:
            gen.append((i, ids[cut:]))
            continue
        opts = option_ids[i]
        common = min(_lcp(opts[0], o) for o in opts[1:]) if len(opts) > 1 else len(opts[0]) - 1
        common = min(common, min(_lcp(o, ids) for o in opts))
        choice.append(_Choice(index=i, trunk=opts[0][cut:common], segments=[o[common:] for o in opts],
                              starts=[_lcp(o, ids) for o in opts], common=common, choices=choices[i]))
    return _Plan(prefix=first[:cut], gen=gen, choice=choice)


# --------------------------------------------------------------------------- one decode step

class _DecodeStep:
    """One token for every row, with static shapes: inputs are copied into fixed tensors, the new
    key/value goes to a device-side column and attention reads the whole (masked) buffer. On CUDA
    the step is captured once as a CUDA graph and replayed: in eager mode the Python and launch
    overhead of ~40 layers × ~60 small ops, not the GPU, sets the pace of decode."""

    def __init__(self, engine: "HFEngine", ctx: SharedPrefixAttention, valid_bias, first_col: int, *, graph: bool):
        import torch

        R = valid_bias.shape[0]
        dev = valid_bias.device
        self.engine, self.ctx = engine, ctx
        self.ids = torch.zeros(R, 1, dtype=torch.long, device=dev)
        self.pos = torch.zeros(R, 1, dtype=torch.long, device=dev)
        self.col = torch.zeros(1, dtype=torch.long, device=dev)
        self.bias = valid_bias.clone()
        self.bias[..., first_col:] = _NEG  # opened one column per step
        self.want_graph = graph
        self.graph = None
        self.logits = None

    def _forward(self):
        self.ctx.own_bias, self.ctx.col_t = self.bias, self.col
        hidden = self.engine.lm(input_ids=self.ids, position_ids=self.pos, use_cache=False,
                                vsd_ctx=self.ctx).last_hidden_state
        return self.engine.lm_head(hidden[:, -1])

    def _capture(self):
        """Capture the step, replay it once and check it against the eager warm-up of the same step
        (same inputs, same buffers): a graph that disagrees is dropped, never trusted silently.
        Returns this step's logits."""
        import torch

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the capture (workspaces); same inputs -> idempotent
            eager = self._forward().clone()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.logits = self._forward()
        graph.replay()
        if not torch.allclose(self.logits.float(), eager.float(), atol=1e-3, rtol=1e-3):
            raise RuntimeError("graph replay disagrees with the eager step")
        self.graph = graph
        return self.logits

    def __call__(self, nxt, pos, col: int):
        self.ids.copy_(nxt[:, None])
        self.pos.copy_(pos)
        self.col.fill_(col)
        self.bias[..., col] = 0.0
        if self.want_graph and self.graph is None:
            try:
                return self._capture()
            except Exception as exc:  # noqa: BLE001 - any capture failure: stay correct, run eager
                log.warning("hf engine: CUDA graph capture failed (%s); decoding eagerly", exc)
                self.want_graph = False
        if self.graph is not None:
            self.graph.replay()
            return self.logits
        return self._forward()


# --------------------------------------------------------------------------- the engine

def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _unwrap(model):
    """The LlavaForConditionalGeneration under a PEFT wrapper (LoRA layers stay injected in it)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not hasattr(base, "model") or not hasattr(base.model, "language_model"):
        raise EngineError(f"hf engine: {type(base).__name__} is not a LLaVA model")
    return base


class HFEngine:
    """``Engine`` over transformers; see the module docstring for how the prefix is shared."""

    name = "hf"

    def __init__(self, cfg: EngineConfig, *, model=None, processor=None):
        import torch

        self.cfg = cfg
        self.device = _resolve_device(cfg.device)
        if model is None:
            from vsd.model.loader import load_model

            model, processor = load_model(cfg.model, dtype=cfg.dtype, device=self.device, adapter=cfg.adapter)
        if processor is None:
            raise EngineError("hf engine: a model was given without its processor")
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        llava = _unwrap(model)
        self.vlm = llava.model  # vision tower + projector + language model
        self.lm = llava.model.language_model
        self.lm_head = llava.get_output_embeddings()
        self.text_config = self.lm.config
        self.n_layers = self.text_config.num_hidden_layers
        self.device = next(self.lm.parameters()).device
        tok = self.tokenizer
        self.image_token_id = tok.convert_tokens_to_ids(getattr(processor, "image_token", IMAGE_TOKEN))
        self.eos_id = tok.eos_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (self.eos_id or 0)
        self._gen = torch.Generator(device="cpu").manual_seed(0)
        self.graph_used = False  # whether the last decode replayed a CUDA graph
        self.flash_prefix = flash_prefix_ok(self.device, self.lm.dtype)
        self.timings: dict[str, float] = {}  # seconds per phase, kept when VSD_ENGINE_TIMINGS=1
        self._timed = os.environ.get("VSD_ENGINE_TIMINGS") == "1"
        _register()

    def close(self) -> None:
        self.model = self.vlm = self.lm = self.lm_head = None

    # ------------------------------------------------------------------ public

    def generate(self, batch: list[ImageRequest]) -> list[ImageResult]:
        check_requests(batch)
        work = batch
        if not self.cfg.share_prefix:  # the baseline: every prompt its own request, its own prefill
            work = [ImageRequest(f"{r.key}\x00{i}", r.image, [p]) for r in batch for i, p in enumerate(r.prompts)]
        answers: dict[str, list[Answer]] = {}
        # images with alike prompt counts share a step: a step pads every image to its largest group
        todo = sorted((r for r in work if r.prompts),
                      key=lambda r: (sum(p.choices is not None for p in r.prompts), len(r.prompts)))
        for r in work:
            if not r.prompts:
                answers[r.key] = []
        for start in range(0, len(todo), self.cfg.batch_size):
            chunk = todo[start:start + self.cfg.batch_size]
            answers.update(self._run_chunk(chunk))
        if not self.cfg.share_prefix:
            merged = {r.key: [answers[f"{r.key}\x00{i}"][0] for i in range(len(r.prompts))] for r in batch}
            answers = merged
        return account(batch, [ImageResult(k, a) for k, a in answers.items()])

    # ------------------------------------------------------------------ one chunk of images

    def _tokenize(self, reqs: list[ImageRequest]):
        tok = self.tokenizer
        texts, where = [], []
        for n, r in enumerate(reqs):
            for i, p in enumerate(r.prompts):
                base = chat_prompt(p.text, image_token=IMAGE_TOKEN)
                texts.append(base)
                where.append((n, i, None))
                for j, c in enumerate(p.choices or ()):
                    texts.append(base + choice_answer(c))
                    where.append((n, i, j))
        ids = tok(texts, add_special_tokens=True)["input_ids"]
        prompt_ids = [[None] * len(r.prompts) for r in reqs]
        option_ids: list[dict[int, list[list[int]]]] = [{} for _ in reqs]
        for (n, i, j), seq in zip(where, ids):
            if j is None:
                prompt_ids[n][i] = list(seq)
            else:
                option_ids[n].setdefault(i, []).append(list(seq) + [self.eos_id])
        plans = []
        for n, r in enumerate(reqs):
            choices = {i: tuple(p.choices) for i, p in enumerate(r.prompts) if p.choices}
            try:
                plans.append(plan_image(prompt_ids[n], option_ids[n], self.image_token_id, choices))
            except EngineError as exc:
                raise EngineError(f"request {r.key!r}: {exc}") from None
        return plans

    def _run_chunk(self, reqs: list[ImageRequest]) -> dict[str, list[Answer]]:
        import torch

        with self._phase("tokenize"):
            plans = self._tokenize(reqs)
            images = [pil_image(r.image, r.key) for r in reqs]
        with torch.inference_mode(), _shared_attention(self.text_config):
            ctx = SharedPrefixAttention(self.n_layers)
            ctx.flash = self.flash_prefix
            with self._phase("prefill"):
                starts = self._prefill(ctx, images, plans)  # expanded position where each suffix starts
            out: dict[str, list[Answer | None]] = {r.key: [None] * len(r.prompts) for r in reqs}
            if any(p.choice for p in plans):
                with self._phase("score"):
                    for n, scored in enumerate(self._score(ctx, plans, starts)):
                        for idx, ans in scored:
                            out[reqs[n].key][idx] = ans
            if any(p.gen for p in plans):
                with self._phase("decode"):
                    for n, texts in enumerate(self._decode(ctx, plans, starts)):
                        for idx, ans in texts:
                            out[reqs[n].key][idx] = ans
        return out  # type: ignore[return-value]

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        """Wall time per phase (synchronised on CUDA) when VSD_ENGINE_TIMINGS=1; else nothing."""
        if not self._timed:
            yield
            return
        import torch

        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        yield
        sync()
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def _prefill(self, ctx: SharedPrefixAttention, images, plans: list[_Plan]) -> list[int]:
        """Vision tower + the shared prefix of every image, once; keeps its keys/values in ``ctx``."""
        import torch

        enc = self.processor(images=images, text=[IMAGE_TOKEN] * len(images), return_tensors="pt", padding=True)
        n_img = (enc["input_ids"] == self.image_token_id).sum(dim=1).tolist()
        seqs = []
        for plan, n in zip(plans, n_img):
            at = plan.prefix.index(self.image_token_id)
            seqs.append(plan.prefix[:at] + [self.image_token_id] * n + plan.prefix[at + 1:])
        P = max(len(s) for s in seqs)
        pads = [P - len(s) for s in seqs]
        ids = torch.tensor([[self.pad_id] * p + s for p, s in zip(pads, seqs)], device=self.device)
        pos = (torch.arange(P, device=self.device)[None, :] - torch.tensor(pads, device=self.device)[:, None]).clamp(min=0)
        if any(pads):
            valid = torch.arange(P, device=self.device)[None, :] >= torch.tensor(pads, device=self.device)[:, None]
            causal = torch.ones(P, P, dtype=torch.bool, device=self.device).tril()
            mask = (causal[None] & valid[:, None, :]) | torch.eye(P, dtype=torch.bool, device=self.device)[None]
            ctx.prefix_mask = mask[:, None]
            ctx.pre_bias = torch.zeros(len(seqs), 1, 1, P, device=self.device).masked_fill(~valid[:, None, None], _NEG)
        extra = {k: v.to(self.device) for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
        if "pixel_values" in extra:
            extra["pixel_values"] = extra["pixel_values"].to(self.lm.dtype)
        ctx.mode = "prefix"
        self.vlm(input_ids=ids, position_ids=pos, use_cache=False, vsd_ctx=ctx, **extra)
        return [len(s) for s in seqs]

    def _rows(self, ctx: SharedPrefixAttention, ids, pos, own_bias):
        ctx.own_bias = own_bias
        hidden = self.lm(input_ids=ids, position_ids=pos, use_cache=False, vsd_ctx=ctx).last_hidden_state
        ctx.col += ids.shape[1]
        return hidden

    def _score(self, ctx, plans: list[_Plan], starts: list[int]):
        """Task-1 rows: one forward of prompt + all choices (tree mask); log-likelihood per choice."""
        import torch

        G = max(len(p.choice) for p in plans)
        rows: list[_Choice | None] = []
        for p in plans:
            rows += p.choice + [None] * (G - len(p.choice))
        lens = [len(c.trunk) + sum(map(len, c.segments)) if c else 1 for c in rows]
        L = max(lens)
        R = len(rows)
        ids = torch.full((R, L), self.pad_id, dtype=torch.long)
        pos = torch.zeros((R, L), dtype=torch.long)
        seg = torch.full((R, L), -2, dtype=torch.long)  # -1 trunk, j = choice j, -2 padding
        picks: list[tuple[int, int, int, int]] = []  # (row, column, target id, choice slot)
        for r, c in enumerate(rows):
            if c is None:
                continue
            pad = L - lens[r]
            cut = c.common - len(c.trunk)  # full-sequence coordinate of the row's first token
            offsets = [len(c.trunk) + sum(map(len, c.segments[:j])) for j in range(len(c.segments))]

            def column(x: int, j: int) -> int:  # row column of full-sequence coordinate x of choice j
                return pad + (x - cut if x < c.common else offsets[j] + x - c.common)

            for j, tokens in enumerate([c.trunk] + c.segments):
                at = pad + (0 if j == 0 else offsets[j - 1])
                first = cut if j == 0 else c.common
                ids[r, at:at + len(tokens)] = torch.tensor(tokens)
                pos[r, at:at + len(tokens)] = torch.arange(len(tokens)) + starts[r // G] + first - cut
                seg[r, at:at + len(tokens)] = j - 1
            for j, s in enumerate(c.segments):
                for x in range(c.starts[j], c.common + len(s)):
                    target = s[x - c.common] if x >= c.common else c.trunk[x - cut]
                    picks.append((r, column(x - 1, j), target, j))
        seg_q, seg_k = seg[:, :, None], seg[:, None, :]
        causal = torch.ones(L, L, dtype=torch.bool).tril()[None]
        visible = causal & (seg_k != -2) & ((seg_k == -1) | (seg_k == seg_q))
        visible |= torch.eye(L, dtype=torch.bool)[None]
        bias = torch.zeros(R, 1, L, L).masked_fill(~visible[:, None], _NEG).to(self.device)
        ctx.start_rows(G, L)
        hidden = self._rows(ctx, ids.to(self.device), pos.to(self.device), bias)
        r_idx, c_idx, tgt, slot = (torch.tensor(v, device=self.device) for v in zip(*picks))
        logp = torch.log_softmax(self.lm_head(hidden[r_idx, c_idx]).float(), dim=-1)
        tok_lp = logp.gather(1, tgt[:, None])[:, 0]
        n_choices = max(len(c.segments) for c in rows if c)
        totals = torch.zeros(R * n_choices, dtype=torch.float64, device=self.device)
        totals.index_add_(0, r_idx * n_choices + slot, tok_lp.double())
        totals = totals.view(R, n_choices).tolist()
        result = []
        for n, p in enumerate(plans):
            scored = []
            for g, c in enumerate(p.choice):
                scores = totals[n * G + g][:len(c.choices)]
                best = max(range(len(scores)), key=scores.__getitem__)
                scored.append((c.index, Answer(c.choices[best], [float(s) for s in scores])))
            result.append(scored)
        return result

    def _decode(self, ctx, plans: list[_Plan], starts: list[int]):
        """Tasks 2/3: suffixes of every image prefilled as rows, then decoded together."""
        import torch

        G = max(len(p.gen) for p in plans)
        rows: list[list[int] | None] = []
        for p in plans:
            rows += [s for _, s in p.gen] + [None] * (G - len(p.gen))
        R = len(rows)
        S0 = max(len(s) if s else 1 for s in rows)
        T = self.cfg.max_new_tokens
        cap = S0 + T
        pads = [S0 - (len(s) if s else 1) for s in rows]
        ids = torch.full((R, S0), self.pad_id, dtype=torch.long)
        for r, s in enumerate(rows):
            if s:
                ids[r, pads[r]:] = torch.tensor(s)
        pad_t = torch.tensor(pads)
        base = torch.tensor([starts[r // G] for r in range(R)])
        cols = torch.arange(cap)
        pos_all = (base[:, None] + cols[None, :] - pad_t[:, None]).clamp(min=0)
        valid = cols[None, :] >= pad_t[:, None]  # [R, cap]
        causal = torch.ones(S0, S0, dtype=torch.bool).tril()[None]
        vis = (causal & valid[:, None, :S0]) | torch.eye(S0, dtype=torch.bool)[None]
        bias = torch.zeros(R, 1, S0, S0).masked_fill(~vis[:, None], _NEG).to(self.device)
        valid_bias = torch.zeros(R, 1, 1, cap).masked_fill(~valid[:, None, None], _NEG).to(self.device)
        pos_all = pos_all.to(self.device)
        live = torch.tensor([s is not None for s in rows], device=self.device)

        ctx.start_rows(G, cap)
        hidden = self._rows(ctx, ids.to(self.device), pos_all[:, :S0], bias)
        logits = self.lm_head(hidden[:, -1])
        step = _DecodeStep(self, ctx, valid_bias, S0,
                           graph=self.cfg.cuda_graph and self.device.type == "cuda")
        out = torch.full((R, T), self.pad_id, dtype=torch.long, device=self.device)
        done = ~live
        for t in range(T):
            nxt = self._next_token(logits)
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            out[:, t] = nxt
            done = done | (nxt == self.eos_id)
            if t == T - 1 or (t % 8 == 7 and bool(done.all())):  # a sync every 8 steps, not every step
                break
            c = S0 + t
            logits = step(nxt, pos_all[:, c:c + 1], c)
        self.graph_used = step.graph is not None
        out = out.tolist()
        result = []
        for n, p in enumerate(plans):
            texts = []
            for g, (idx, _) in enumerate(p.gen):
                toks = out[n * G + g]
                if self.eos_id in toks:
                    toks = toks[:toks.index(self.eos_id)]
                texts.append((idx, Answer(self.tokenizer.decode(toks, skip_special_tokens=True).strip())))
            result.append(texts)
        return result

    def _next_token(self, logits):  # noqa: D401 - greedy, or sampled at cfg.temperature
        import torch

        if self.cfg.temperature <= 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits.float() / self.cfg.temperature, dim=-1)
        return torch.multinomial(probs.cpu(), 1, generator=self._gen)[:, 0].to(logits.device)


def prompts_for(subject: str, obj: str, tasks: Sequence[int] = (1, 2, 3)) -> list[Prompt]:
    """The paper's task prompts for one pair, task 1 as a choice over the 9 relations."""
    from vsd.data.prompts import task_prompt
    from vsd.relations import RELATIONS

    return [Prompt(t, task_prompt(t, subject, obj), tuple(RELATIONS) if t == 1 else None) for t in tasks]
