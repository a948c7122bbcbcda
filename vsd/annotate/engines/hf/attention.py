"""Shared-prefix attention: the image prefix is computed once and read in place by every row.

All prompts about one image (pairs × tasks) share the tokens up to and including the image, so its
keys/values are kept once and never copied. The prompts' own tokens then run as rows of one batch
whose attention has two parts (as in cascade / Hydragen attention):

* the prefix part: the queries of the G rows of image n are stacked into one query block of image
  n, so one batched matmul per image reads its prefix keys once for all its rows (no
  ``repeat_interleave``/``expand`` copy of the cache, which capped the batch of the naive attempt);
* the own part: each row against its own suffix + generated tokens (short, preallocated buffer);
* the two softmaxes are merged exactly with their log-sum-exps.

The function is registered with transformers' ``AttentionInterface`` and switched on for the
language model only, only inside the engine's forwards (``shared_attention``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

ATTN_NAME = "vsd_shared_prefix"
NEG = float("-inf")


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
            out = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=self.prefix_mask,
                is_causal=self.prefix_mask is None,
                scale=scaling,
                enable_gqa=k.shape[1] != q.shape[1],
            )
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
        o_pre, lse_pre = prefix_attention(
            q_pre, self.pre_k[layer], self.pre_v[layer], scaling, self.pre_bias, flash=self.flash
        )
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
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(
            q, k, v, 0.0, False, False, scale=scaling
        )[:2]
        return out.float(), lse.unsqueeze(-1)
    s = torch.matmul(q, k.transpose(-1, -2)).float() * scaling
    if bias is not None:
        s = s + bias
    lse = torch.logsumexp(s, dim=-1, keepdim=True)
    return torch.matmul(torch.exp(s - lse).to(v.dtype), v).float(), lse


def flash_prefix_ok(device, dtype, mode: str = "auto") -> bool:
    """Whether the fused prefix kernel runs here and agrees with the reference path (checked once
    on small random tensors; any error or mismatch keeps the matmul path). ``mode``:
    ``engine.hf.prefix_attention`` (``matmul`` never uses the kernel)."""
    import torch

    if mode == "matmul":
        return False
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return False
    try:
        g = torch.Generator(device=device).manual_seed(0)
        q, k, v = (torch.randn(2, 4, n, 64, device=device, generator=g).to(dtype) for n in (3, 50, 50))
        o1, l1 = prefix_attention(q, k, v, 0.125, None, flash=True)
        o2, l2 = prefix_attention(q, k, v, 0.125, None, flash=False)
        return bool(
            torch.allclose(o1, o2, atol=2e-2, rtol=2e-2) and torch.allclose(l1, l2, atol=2e-2, rtol=2e-2)
        )
    except Exception as exc:  # noqa: BLE001 - no such kernel on this build/GPU: use the matmul path
        log.info("hf engine: flash prefix attention unavailable (%s)", exc)
        return False


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    ctx = kwargs.get("vsd_ctx")
    if ctx is None:  # anyone else's forward while ours is switched on: behave like sdpa
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    return ctx.attend(module.layer_idx, query, key, value, scaling or query.shape[-1] ** -0.5), None


_registered = False


def register() -> None:
    """Make ``ATTN_NAME`` known to transformers (once per process)."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(ATTN_NAME, _attention)
        _registered = True


@contextlib.contextmanager
def shared_attention(text_config) -> Iterator[None]:
    """Switch the language model to our attention for one forward (the vision tower keeps its own),
    and back, so the same model object still serves plain ``generate`` calls."""
    old = text_config._attn_implementation
    text_config._attn_implementation = ATTN_NAME
    try:
        yield
    finally:
        text_config._attn_implementation = old
