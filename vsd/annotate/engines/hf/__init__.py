"""The ``hf`` engine: transformers LLaVA in-process (CPU or GPU), one prefill per image.

attention.py  shared-prefix attention (two-part softmax) and its registration with transformers
plan.py       token planning: the image's shared prefix, one row per prompt, tree rows for choices
decode.py     one static-shape decode step, replayed as a CUDA graph on GPUs
engine.py     ``HFEngine``: chunks of images through prefill, choice scoring and decode
options.py    ``HFOptions``: the ``engine.hf.*`` settings
"""

from typing import Any

from vsd.annotate.engines.hf.options import HFOptions

__all__ = ["HFEngine", "HFOptions"]


def __getattr__(name: str) -> Any:
    # The engine module is imported on first use only: validating ``engine.hf.*`` needs the options.
    if name == "HFEngine":
        from vsd.annotate.engines.hf.engine import HFEngine

        return HFEngine
    raise AttributeError(name)
