"""``sglang.Engine`` in the actor: JPEG bytes as ``image_data``, our chat template, grouped prompts.

* One ``engine.generate`` call per batch: every prompt becomes one request whose ``image_data`` is
  its image as a base64 string (the form every sglang 0.5.x ``load_image`` accepts). The prompts
  of one image are ADJACENT in the request list and start with the same tokens (BOS, ``USER: ``,
  the image), so SGLang's radix cache prefills each image once and the others hit the cache.
* The prompt text is `prompting.chat_prompt` — the same function the hf engine uses — so both
  engines see byte-identical prompts; SGLang's own chat templates are never applied.
* Task 1 (``choices``) is a constrained choice through ``sampling_params["regex"]``: decoding is
  restricted to exactly one of the choices (greedy under the grammar), so the answer is always
  one of the 9 relations. Why not log-likelihood scoring as in hf: scoring needs one request per
  choice plus our tokenizer to find the answer tokens; the regex is one request that rides the
  same radix-cache prefix. ``Answer.scores`` is therefore None here.
* ``SGLANG_CPU_WORKERS`` is set to the CPUs Ray gave the actor (or ``engine.sglang.cpu_workers``)
  before the engine starts (``vsd.serving.start_sglang``), so its CPU-side pools do not
  oversubscribe the node.
* ``sglang`` is imported lazily, only when the engine is built: CPU nodes never have it; tests
  inject a recording stand-in through ``engine_factory``.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from vsd.annotate.engines.base import (Answer, EngineError, ImageRequest, ImageResult, account, check_requests,
                                       image_bytes)
from vsd.annotate.engines.config import EngineOptions
from vsd.annotate.engines.prompting import IMAGE_TOKEN, chat_prompt, choice_regex
from vsd.config import ConfigError, describe
from vsd.serving import localize_model, start_sglang

log = logging.getLogger(__name__)

_DTYPES = {"auto": "auto", "bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


@dataclasses.dataclass
class SGLangOptions(EngineOptions):
    """``engine.sglang.*``."""

    FLAT_KEYS: ClassVar[tuple[str, ...]] = ("cpu_workers", "engine_args")

    cpu_workers: int | None = describe("cpu_workers", None, help="SGLANG_CPU_WORKERS (default: the CPUs Ray "
                                       "gave the actor)")
    engine_args: dict[str, Any] = describe("engine_args", factory=dict, help="passed through to "
                                           "sglang.Engine(...) (tp_size, mem_fraction_static, ...)")

    def validate(self) -> None:
        if self.cpu_workers is not None and self.cpu_workers < 1:
            raise ConfigError(f"cpu_workers: must be >= 1, got {self.cpu_workers}")

    def check(self, cfg: Any) -> None:
        if cfg.adapter:
            raise ConfigError("adapter: sglang does not serve LoRA on LLaVA; merge it with `vsd export` "
                              "and set model to the export")


def engine_args(cfg: Any) -> dict[str, Any]:
    """``sglang.Engine(**args)``: model, dtype, then ``engine.sglang.engine_args`` verbatim (they win)."""
    model = localize_model(cfg.model, "engine.model") if cfg.model.startswith("tiny:") else cfg.model
    args: dict[str, Any] = {"model_path": model, "dtype": _DTYPES.get(cfg.dtype, cfg.dtype)}
    if cfg.device not in ("auto", "cuda") and not cfg.device.startswith("cuda"):
        args["device"] = cfg.device
    args.update(cfg.sglang.engine_args)
    return args


class SGLangEngine:
    """``Engine`` over ``sglang.Engine``; see the module docstring for how requests are shaped."""

    name = "sglang"

    def __init__(self, cfg: Any, *, engine_factory: Callable[..., Any] | None = None):
        cfg.validate()  # the adapter rule and the section's own checks, also for configs built in code
        self.cfg = cfg
        self.engine = start_sglang("sglang engine", engine_args(cfg), cpu_workers=cfg.sglang.cpu_workers,
                                   factory=engine_factory, hint="use engine.kind=hf on CPU", error=EngineError)

    def sampling_params(self, choices: tuple[str, ...] | None) -> dict[str, Any]:
        if choices is not None:
            longest = max(len(c.split()) for c in choices)
            return {"temperature": 0.0, "max_new_tokens": 4 * longest + 4, "regex": choice_regex(choices)}
        return {"temperature": self.cfg.temperature, "max_new_tokens": self.cfg.max_new_tokens}

    def generate(self, batch: list[ImageRequest]) -> list[ImageResult]:
        check_requests(batch)
        prompts, images, params, owners = [], [], [], []
        for req in batch:
            data = base64.b64encode(image_bytes(req.image)).decode("ascii")
            for i, p in enumerate(req.prompts):  # one image's prompts adjacent: radix-cache hits
                prompts.append(chat_prompt(p.text, image_token=IMAGE_TOKEN))
                images.append(data)
                params.append(self.sampling_params(p.choices))
                owners.append((req, i))
        answers: dict[str, list[Answer | None]] = {r.key: [None] * len(r.prompts) for r in batch}
        if prompts:
            outputs = self.engine.generate(prompt=prompts, image_data=images, sampling_params=params)
            if len(outputs) != len(prompts):
                raise EngineError(f"sglang returned {len(outputs)} outputs for {len(prompts)} prompts")
            for (req, i), out in zip(owners, outputs):
                answers[req.key][i] = self._answer(req, i, out)
        return account(batch, [ImageResult(k, v) for k, v in answers.items()])  # type: ignore[arg-type]

    @staticmethod
    def _answer(req: ImageRequest, i: int, out: dict) -> Answer:
        text = str(out.get("text", "")).strip()
        choices = req.prompts[i].choices
        if choices is None:
            return Answer(text)
        if text not in choices:  # the regex makes this impossible unless the engine ignored it
            raise EngineError(f"request {req.key!r}: sglang answered {text!r}, not one of the choices")
        return Answer(text)

    def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None and hasattr(engine, "shutdown"):
            engine.shutdown()
