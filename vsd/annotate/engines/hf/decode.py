"""One decode step with static shapes, replayed as a CUDA graph where it can be.

In eager mode the Python and launch overhead of ~40 layers × ~60 small ops, not the GPU, sets the
pace of decode; a captured graph removes it. A graph is trusted only after its first replay agrees
with the eager step; any capture failure falls back to eager decode, loudly.
"""

from __future__ import annotations

import logging
from typing import Any

from vsd.annotate.engines.hf.attention import NEG, SharedPrefixAttention

log = logging.getLogger(__name__)


class DecodeStep:
    """One token for every row, with static shapes: inputs are copied into fixed tensors, the new
    key/value goes to a device-side column and attention reads the whole (masked) buffer; on CUDA
    (``graph``) the step is captured once and replayed."""

    def __init__(
        self, lm: Any, lm_head: Any, ctx: SharedPrefixAttention, valid_bias, first_col: int, *, graph: bool
    ):
        import torch

        R = valid_bias.shape[0]
        dev = valid_bias.device
        self.lm, self.lm_head, self.ctx = lm, lm_head, ctx
        self.ids = torch.zeros(R, 1, dtype=torch.long, device=dev)
        self.pos = torch.zeros(R, 1, dtype=torch.long, device=dev)
        self.col = torch.zeros(1, dtype=torch.long, device=dev)
        self.bias = valid_bias.clone()
        self.bias[..., first_col:] = NEG  # opened one column per step
        self.want_graph = graph
        self.graph = None
        self.logits = None

    def _forward(self):
        self.ctx.own_bias, self.ctx.col_t = self.bias, self.col
        hidden = self.lm(
            input_ids=self.ids, position_ids=self.pos, use_cache=False, vsd_ctx=self.ctx
        ).last_hidden_state
        return self.lm_head(hidden[:, -1])

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
