"""``engine.hf.*``: the transformers engine's own settings (light: no torch import)."""

from __future__ import annotations

import dataclasses

from vsd.annotate.engines.config import EngineOptions
from vsd.config import describe

PREFIX_ATTENTION = ["auto", "matmul"]


@dataclasses.dataclass
class HFOptions(EngineOptions):
    # 4 steps of engine.batch_size per call: at batch 4 on the tiny model a step is ~25 ms, and a
    # call per step left the actor waiting on Ray a quarter of the time (bench/pipeline_efficiency)
    call_steps = 4

    share_prefix: bool = describe(
        "share_prefix",
        True,
        help="prefill each image once for all its prompts "
        "(false = every prompt its own prefill; for benchmarks)",
    )
    cuda_graph: bool = describe(
        "cuda_graph",
        True,
        help="on CUDA: replay each decode step as a CUDA graph "
        "(eager decode is bound by Python/launch overhead, not the GPU)",
    )
    prefix_attention: str = describe(
        "prefix_attention",
        "auto",
        choices=PREFIX_ATTENTION,
        help="auto: the fused flash kernel for the shared prefix where it runs and "
        "agrees (CUDA, half precision), else two matmuls; matmul: always the "
        "matmuls (to measure what the kernel buys)",
    )
    timings: bool = describe(
        "timings",
        False,
        help="record wall time per phase (tokenize, prefill, score, "
        "decode) in the engine's ``timings``; adds a device sync per phase",
    )
