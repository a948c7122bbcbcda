"""``HFEngine``: transformers LLaVA (+ PEFT adapter) with one prefill of the image per request group.

Per chunk of ``batch_size`` images: tokenize and plan (``plan``), prefill every image's shared
prefix once (``attention``), score all task-1 choices of all images in one forward, then decode the
free-text rows of all images together (``decode``). Task 1 (a prompt with ``choices``) is a
constrained choice scored, never generated: the choice with the highest log-likelihood of
``" {choice}</s>"`` wins. Tasks 2/3 decode greedily (or sample) together.

The equivalence with plain, independent ``model.generate`` / full forward passes is asserted in
fp32 by ``tests/annotate/test_engine_hf.py``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from vsd.annotate.engines.base import (
    DEFAULT_NEW_TOKENS,
    Answer,
    EngineError,
    ImageRequest,
    ImageResult,
    account,
    check_requests,
    pil_image,
)
from vsd.annotate.engines.hf.attention import (
    NEG,
    SharedPrefixAttention,
    flash_prefix_ok,
    register,
    shared_attention,
)
from vsd.annotate.engines.hf.decode import DecodeStep
from vsd.annotate.engines.hf.options import HFOptions
from vsd.annotate.engines.hf.plan import ChoiceRow, ImagePlan, plan_image
from vsd.annotate.engines.prompting import IMAGE_TOKEN, chat_prompt, choice_answer
from vsd.serving import resolve_device

log = logging.getLogger(__name__)


def _unwrap(model):
    """The LlavaForConditionalGeneration under a PEFT wrapper (LoRA layers stay injected in it)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not hasattr(base, "model") or not hasattr(base.model, "language_model"):
        raise EngineError(f"hf engine: {type(base).__name__} is not a LLaVA model")
    return base


class HFEngine:
    """``Engine`` over transformers; see the module docstring for how the prefix is shared."""

    name = "hf"

    def __init__(self, cfg: Any, *, model=None, processor=None):
        import torch

        cfg.validate()
        self.cfg = cfg
        self.opts: HFOptions = cfg.hf
        self.device = resolve_device(cfg.device)
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
        self.flash_prefix = flash_prefix_ok(self.device, self.lm.dtype, self.opts.prefix_attention)
        self.timings: dict[str, float] = {}  # seconds per phase, kept when engine.hf.timings is on
        register()

    def close(self) -> None:
        self.model = self.vlm = self.lm = self.lm_head = None

    # ------------------------------------------------------------------ public

    def generate(self, batch: list[ImageRequest]) -> list[ImageResult]:
        check_requests(batch)
        work = batch
        if not self.opts.share_prefix:  # the baseline: every prompt its own request, its own prefill
            work = [
                ImageRequest(f"{r.key}\x00{i}", r.image, [p]) for r in batch for i, p in enumerate(r.prompts)
            ]
        answers: dict[str, list[Answer]] = {}
        # images with alike prompt counts share a step: a step pads every image to its largest group
        todo = sorted(
            (r for r in work if r.prompts),
            key=lambda r: (sum(p.choices is not None for p in r.prompts), len(r.prompts)),
        )
        for r in work:
            if not r.prompts:
                answers[r.key] = []
        for start in range(0, len(todo), self.cfg.batch_size):
            chunk = todo[start : start + self.cfg.batch_size]
            answers.update(self._run_chunk(chunk))
        if not self.opts.share_prefix:
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
                texts.append(base + (" " + p.answer_prefix if p.answer_prefix else ""))
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
        with torch.inference_mode(), shared_attention(self.text_config):
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
                limits = [
                    [
                        r.prompts[idx].max_new_tokens or self.cfg.max_new_tokens or DEFAULT_NEW_TOKENS
                        for idx, _ in p.gen
                    ]
                    for r, p in zip(reqs, plans)
                ]
                lines = [[r.prompts[idx].min_lines for idx, _ in p.gen] for r, p in zip(reqs, plans)]
                with self._phase("decode"):
                    for n, texts in enumerate(self._decode(ctx, plans, starts, limits, lines)):
                        for idx, ans in texts:
                            out[reqs[n].key][idx] = ans
        return out  # type: ignore[return-value]

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        """Wall time per phase (synchronised on CUDA) when ``engine.hf.timings`` is on; else nothing."""
        if not self.opts.timings:
            yield
            return
        import torch

        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        yield
        sync()
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def _prefill(self, ctx: SharedPrefixAttention, images, plans: list[ImagePlan]) -> list[int]:
        """Vision tower + the shared prefix of every image, once; keeps its keys/values in ``ctx``."""
        import torch

        enc = self.processor(
            images=images, text=[IMAGE_TOKEN] * len(images), return_tensors="pt", padding=True
        )
        n_img = (enc["input_ids"] == self.image_token_id).sum(dim=1).tolist()
        seqs = []
        for plan, n in zip(plans, n_img):
            at = plan.prefix.index(self.image_token_id)
            seqs.append(plan.prefix[:at] + [self.image_token_id] * n + plan.prefix[at + 1 :])
        P = max(len(s) for s in seqs)
        pads = [P - len(s) for s in seqs]
        ids = torch.tensor([[self.pad_id] * p + s for p, s in zip(pads, seqs)], device=self.device)
        pos = (
            torch.arange(P, device=self.device)[None, :] - torch.tensor(pads, device=self.device)[:, None]
        ).clamp(min=0)
        if any(pads):
            valid = (
                torch.arange(P, device=self.device)[None, :]
                >= torch.tensor(pads, device=self.device)[:, None]
            )
            causal = torch.ones(P, P, dtype=torch.bool, device=self.device).tril()
            mask = (causal[None] & valid[:, None, :]) | torch.eye(P, dtype=torch.bool, device=self.device)[
                None
            ]
            ctx.prefix_mask = mask[:, None]
            ctx.pre_bias = torch.zeros(len(seqs), 1, 1, P, device=self.device).masked_fill(
                ~valid[:, None, None], NEG
            )
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

    def _score(self, ctx, plans: list[ImagePlan], starts: list[int]):
        """Task-1 rows: one forward of prompt + all choices (tree mask); log-likelihood per choice."""
        import torch

        G = max(len(p.choice) for p in plans)
        rows: list[ChoiceRow | None] = []
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

            def column(x: int, j: int, pad=pad, cut=cut, c=c, offsets=offsets) -> int:
                """The row column of full-sequence coordinate ``x`` of choice ``j``."""
                return pad + (x - cut if x < c.common else offsets[j] + x - c.common)

            for j, tokens in enumerate([c.trunk] + c.segments):
                at = pad + (0 if j == 0 else offsets[j - 1])
                first = cut if j == 0 else c.common
                ids[r, at : at + len(tokens)] = torch.tensor(tokens)
                pos[r, at : at + len(tokens)] = torch.arange(len(tokens)) + starts[r // G] + first - cut
                seg[r, at : at + len(tokens)] = j - 1
            for j, s in enumerate(c.segments):
                for x in range(c.starts[j], c.common + len(s)):
                    target = s[x - c.common] if x >= c.common else c.trunk[x - cut]
                    picks.append((r, column(x - 1, j), target, j))
        seg_q, seg_k = seg[:, :, None], seg[:, None, :]
        causal = torch.ones(L, L, dtype=torch.bool).tril()[None]
        visible = causal & (seg_k != -2) & ((seg_k == -1) | (seg_k == seg_q))
        visible |= torch.eye(L, dtype=torch.bool)[None]
        bias = torch.zeros(R, 1, L, L).masked_fill(~visible[:, None], NEG).to(self.device)
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
                scores = totals[n * G + g][: len(c.choices)]
                best = max(range(len(scores)), key=scores.__getitem__)
                scored.append((c.index, Answer(c.choices[best], [float(s) for s in scores])))
            result.append(scored)
        return result

    def _newline_ids(self):
        """Token ids whose text holds a line break (a line of a task-3 answer ends with one)."""
        import torch

        if getattr(self, "_newlines", None) is None:
            vocab = range(len(self.tokenizer))
            ids = [i for i in vocab if "\n" in self.tokenizer.decode([i])]
            self._newlines = torch.tensor(ids or [-1], dtype=torch.long, device=self.device)
        return self._newlines

    def _decode(
        self,
        ctx,
        plans: list[ImagePlan],
        starts: list[int],
        limits: list[list[int]],
        min_lines: list[list[int]] | None = None,
    ):
        """Tasks 2/3: suffixes of every image prefilled as rows, then decoded together, each row
        until its EOS or its own token budget (``limits``, per plan and generated prompt); a row
        with ``min_lines`` cannot end (EOS masked) before it has written that many lines."""
        import torch

        G = max(len(p.gen) for p in plans)
        rows: list[list[int] | None] = []
        budget: list[int] = []
        breaks: list[int] = []  # line breaks each row must write before it may end
        for n, (p, lim) in enumerate(zip(plans, limits)):
            rows += [s for _, s in p.gen] + [None] * (G - len(p.gen))
            budget += list(lim) + [1] * (G - len(p.gen))
            want = min_lines[n] if min_lines else [0] * len(p.gen)
            breaks += [max(0, m - 1) for m in want] + [0] * (G - len(p.gen))
        R = len(rows)
        S0 = max(len(s) if s else 1 for s in rows)
        T = max(budget)
        cap = S0 + T
        pads = [S0 - (len(s) if s else 1) for s in rows]
        ids = torch.full((R, S0), self.pad_id, dtype=torch.long)
        for r, s in enumerate(rows):
            if s:
                ids[r, pads[r] :] = torch.tensor(s)
        pad_t = torch.tensor(pads)
        base = torch.tensor([starts[r // G] for r in range(R)])
        cols = torch.arange(cap)
        pos_all = (base[:, None] + cols[None, :] - pad_t[:, None]).clamp(min=0)
        valid = cols[None, :] >= pad_t[:, None]  # [R, cap]
        causal = torch.ones(S0, S0, dtype=torch.bool).tril()[None]
        vis = (causal & valid[:, None, :S0]) | torch.eye(S0, dtype=torch.bool)[None]
        bias = torch.zeros(R, 1, S0, S0).masked_fill(~vis[:, None], NEG).to(self.device)
        valid_bias = torch.zeros(R, 1, 1, cap).masked_fill(~valid[:, None, None], NEG).to(self.device)
        pos_all = pos_all.to(self.device)
        live = torch.tensor([s is not None for s in rows], device=self.device)

        ctx.start_rows(G, cap)
        hidden = self._rows(ctx, ids.to(self.device), pos_all[:, :S0], bias)
        logits = self.lm_head(hidden[:, -1])
        step = DecodeStep(
            self.lm,
            self.lm_head,
            ctx,
            valid_bias,
            S0,
            graph=self.opts.cuda_graph and self.device.type == "cuda",
        )
        out = torch.full((R, T), self.pad_id, dtype=torch.long, device=self.device)
        done = ~live
        last = torch.tensor(budget, device=self.device) - 1  # the step at which each row's budget ends
        need = torch.tensor(breaks, device=self.device)
        written = torch.zeros_like(need)
        open_line = need > 0  # a line was just broken: it must get words before the answer ends
        newline = self._newline_ids() if any(breaks) else None
        for t in range(T):
            if newline is not None:
                logits = logits.clone()
                early = (written < need) | open_line
                logits[:, self.eos_id] = torch.where(early, NEG, logits[:, self.eos_id])
            nxt = self._next_token(logits)
            if newline is not None:
                broke = torch.isin(nxt, newline)
                written = written + broke.long()
                open_line = broke & (need > 0)
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            out[:, t] = nxt
            done = done | (nxt == self.eos_id) | (last <= t)
            if t == T - 1 or (t % 8 == 7 and bool(done.all())):  # a sync every 8 steps, not every step
                break
            c = S0 + t
            logits = step(nxt, pos_all[:, c : c + 1], c)
        self.graph_used = step.graph is not None
        out = out.tolist()
        result = []
        for n, p in enumerate(plans):
            texts = []
            for g, (idx, _) in enumerate(p.gen):
                toks = out[n * G + g][: budget[n * G + g]]
                ended = self.eos_id in toks
                if ended:
                    toks = toks[: toks.index(self.eos_id)]
                text = self.tokenizer.decode(toks, skip_special_tokens=True).strip()
                texts.append((idx, Answer(text, truncated=not ended)))
            result.append(texts)
        return result

    def _next_token(self, logits):  # noqa: D401 - greedy, or sampled at cfg.temperature
        import torch

        if self.cfg.temperature <= 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits.float() / self.cfg.temperature, dim=-1)
        return torch.multinomial(probs.cpu(), 1, generator=self._gen)[:, 0].to(logits.device)
