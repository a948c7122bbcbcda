"""``sglang.Engine`` in the actor: images as data URLs, our chat template, grouped prompts.

* **What it serves**: a merged export in the original LLaVA layout (``vsd export --layout sglang``,
  see ``vsd/model/sglang_layout.py``). Before the engine starts, the model is localised (``tiny:``,
  local dir, ``s3://`` prefix) and checked: safetensors only, no remote code, an architecture
  SGLang serves and a CLIP tower inside the export; anything else fails in one line naming the fix.
  SGLang is pointed at the export's own tower (``json_model_override_args``) and loads safetensors
  only (``load_format``). ``engine_args`` keys that change loading or trust are refused unless
  ``allow_engine_args`` names them.
* One ``engine.generate`` call per batch: every prompt becomes one request whose ``image_data`` is
  its image as a ``data:image/jpeg;base64,...`` URL (a bare base64 string starting with ``/``,
  which every JPEG's does, is taken for a file path by SGLang). The prompts of one image are
  ADJACENT and start with the same tokens (BOS, ``USER: ``, the image); each image with several
  prompts is first prefilled alone (``_prime``), so SGLang's radix cache computes it once and every
  prompt of the batch finds it cached.
* The prompt text is ``prompting.chat_prompt`` — the same function the hf engine uses — so both
  engines see byte-identical prompts; SGLang's own chat templates are never applied.
* Task 1 (``choices``) is a constrained choice through ``sampling_params["regex"]``: decoding is
  restricted to exactly one of the choices (greedy under the grammar), so the answer is always one
  of the 9 relations. Why not log-likelihood scoring as in hf: scoring needs one request per choice
  plus our tokenizer to find the answer tokens; the regex is one request that rides the same
  radix-cache prefix. ``Answer.scores`` is therefore None here.
* The radix cache is checked, not assumed: each batch logs the share of its prompt tokens SGLang
  reports as cached (``meta_info.cached_tokens``) and in how many prompts the whole image was cached
  (`CacheShare`); ``SGLangEngine.cache`` keeps the totals for benchmarks and tests.
* ``finish_reason: length`` (the answer hit ``max_new_tokens``) sets ``Answer.truncated``.
* A request SGLang aborts makes ``generate`` raise ``ValueError`` for the whole call; that becomes
  an ``EngineError`` naming the batch, and the generate stage retries each request alone, so only
  the broken one turns into an error row (as with the hf engine).
* bfloat16 with SGLang's float16 CLIP tower: the engine registers ``sglang_models`` (a
  ``LlavaLlamaForCausalLM`` with two dtype casts) through ``SGLANG_EXTERNAL_MODEL_PACKAGE``.
* ``sglang`` is imported lazily, only when the engine is built: CPU nodes never have it; tests
  inject a recording stand-in through ``engine_factory``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
from collections.abc import Callable
from typing import Any

from vsd.annotate.engines.base import (
    DEFAULT_NEW_TOKENS,
    Answer,
    EngineError,
    ImageRequest,
    ImageResult,
    account,
    check_requests,
    image_bytes,
)
from vsd.annotate.engines.config import EngineOptions
from vsd.annotate.engines.prompting import chat_prompt, choice_regex
from vsd.backends.sglang import CPU_ENGINE_ARGS, start_sglang
from vsd.config import ConfigError, describe
from vsd.errors import VSDError
from vsd.serving import check_engine_args, local_model

log = logging.getLogger(__name__)

MODELS_PACKAGE = "vsd.annotate.engines.sglang_models"


@dataclasses.dataclass
class SGLangOptions(EngineOptions):
    """``engine.sglang.*``."""

    cpu_workers: int | None = describe(
        "cpu_workers", None, ge=1, help="SGLANG_CPU_WORKERS (default: the CPUs Ray gave the actor)"
    )
    engine_args: dict[str, Any] = describe(
        "engine_args",
        factory=dict,
        help="passed through to sglang.Engine(...) (tp_size, mem_fraction_static, ...)",
    )
    allow_engine_args: list[str] = describe(
        "allow_engine_args",
        factory=list,
        help="engine_args keys that change what is loaded or run "
        "(load_format, revision, ...), refused unless listed here",
    )

    def validate(self) -> None:
        check_engine_args(self.engine_args, self.allow_engine_args)

    def check(self, cfg: Any) -> None:
        if cfg.adapter:
            raise ConfigError(
                "adapter: sglang does not serve LoRA on LLaVA; merge it with "
                "`vsd export --layout sglang` and set model to the export"
            )


def engine_args(cfg: Any) -> dict[str, Any]:
    """``sglang.Engine(**args)`` for ``cfg``: the localised, checked export, its own CLIP tower,
    safetensors only, then ``engine.sglang.engine_args`` (they win, within the loading policy)."""
    from vsd.model.sglang_layout import check_servable, tower_override

    opts = cfg.sglang  # validated: its engine_args passed check_engine_args
    remote_code = bool(opts.engine_args.get("trust_remote_code"))
    try:
        model = local_model(cfg.model, "engine.model", remote_code=remote_code)
        config = check_servable(model)
        local_model(os.path.join(model, config["mm_vision_tower"]), "engine.model (CLIP tower)")
    except VSDError as exc:
        raise EngineError(str(exc)) from None
    overrides = {
        **json.loads(opts.engine_args.get("json_model_override_args") or "{}"),
        **tower_override(model, config),
    }
    args: dict[str, Any] = {"model_path": model, "dtype": cfg.dtype, "load_format": "safetensors"}
    if cfg.device == "cpu":
        args.update(device="cpu", **CPU_ENGINE_ARGS)
    args.update(opts.engine_args)
    args["json_model_override_args"] = json.dumps(overrides)
    return args


@dataclasses.dataclass
class CacheShare:
    """What SGLang's radix cache saved: prompt tokens sent and found cached, and the prompts whose
    cached prefix covered their whole image (more cached tokens than the image has)."""

    prompts: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    image_cached: int = 0

    def add(self, outputs: list[dict], image_tokens: int) -> CacheShare:
        """This batch's share (and into the running totals)."""
        batch = CacheShare()
        for out in outputs:
            meta = out.get("meta_info") or {}
            cached = int(meta.get("cached_tokens") or 0)
            batch.prompts += 1
            batch.prompt_tokens += int(meta.get("prompt_tokens") or 0)
            batch.cached_tokens += cached
            batch.image_cached += bool(image_tokens) and cached > image_tokens
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(batch, f.name))
        return batch

    def describe(self) -> str:
        tokens = self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0
        images = self.image_cached / self.prompts if self.prompts else 0.0
        return (
            f"{self.cached_tokens}/{self.prompt_tokens} prompt tokens cached ({tokens:.0%}), "
            f"the image cached in {self.image_cached}/{self.prompts} prompts ({images:.0%})"
        )


def image_tokens(model_dir: str) -> int:
    """Tokens one image takes in the export's prompts: (image_size / patch_size)^2 patches of its
    CLIP tower (``mm_vision_select_feature: patch``; a ``cls_patch`` export adds one); 0 if unknown."""
    try:
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        with open(os.path.join(model_dir, config["mm_vision_tower"], "config.json"), encoding="utf-8") as f:
            tower = json.load(f)
        tower = tower.get("vision_config", tower)
        side = int(tower["image_size"]) // int(tower["patch_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    return side * side + (config.get("mm_vision_select_feature") == "cls_patch")


def data_url(image: bytes) -> str:
    """A data URL SGLang decodes in memory (its mime type from the bytes)."""
    mime = "image/png" if image.startswith(b"\x89PNG") else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"


class SGLangEngine:
    """``Engine`` over ``sglang.Engine``; see the module docstring for how requests are shaped."""

    name = "sglang"

    def __init__(self, cfg: Any, *, engine_factory: Callable[..., Any] | None = None):
        cfg.validate()  # the adapter rule and the section's own checks, also for configs built in code
        self.cfg = cfg
        args = engine_args(cfg)
        self.cache, self.image_tokens = CacheShare(), image_tokens(args["model_path"])
        if os.environ.setdefault("SGLANG_EXTERNAL_MODEL_PACKAGE", MODELS_PACKAGE) != MODELS_PACKAGE:
            log.warning(
                "sglang engine: SGLANG_EXTERNAL_MODEL_PACKAGE is set elsewhere; bfloat16 LLaVA may fail"
            )
        self.engine = start_sglang(
            "sglang engine",
            args,
            cpu_workers=cfg.sglang.cpu_workers,
            factory=engine_factory,
            hint="use engine.kind=hf on CPU",
            error=EngineError,
        )

    def sampling_params(
        self, choices: tuple[str, ...] | None, max_new_tokens: int | None = None, min_lines: int = 0
    ) -> dict[str, Any]:
        if choices is not None:
            longest = max(len(c.split()) for c in choices)
            return {"temperature": 0.0, "max_new_tokens": 4 * longest + 4, "regex": choice_regex(choices)}
        budget = max_new_tokens or self.cfg.max_new_tokens or DEFAULT_NEW_TOKENS
        params = {"temperature": self.cfg.temperature, "max_new_tokens": budget}
        if min_lines > 1:  # the answer's end is reachable only after that many non-empty lines
            params["regex"] = r"[^\n]+(\n[^\n]+){" + str(min_lines - 1) + ",}"
        return params

    def generate(self, batch: list[ImageRequest]) -> list[ImageResult]:
        check_requests(batch)
        prompts, images, params, owners = [], [], [], []
        for req in batch:
            url = data_url(image_bytes(req.image))
            for i, p in enumerate(req.prompts):  # one image's prompts adjacent: radix-cache hits
                prompts.append(chat_prompt(p.text) + (" " + p.answer_prefix if p.answer_prefix else ""))
                images.append(url)
                params.append(self.sampling_params(p.choices, p.max_new_tokens, p.min_lines))
                owners.append((req, i))
        answers: dict[str, list[Answer | None]] = {r.key: [None] * len(r.prompts) for r in batch}
        if prompts:
            try:
                primed = self._prime(batch, prompts, images)
                outputs = self.engine.generate(prompt=prompts, image_data=images, sampling_params=params)
            except ValueError as exc:  # SGLang aborted a request: the whole call fails
                first = (str(exc).strip().splitlines() or ["aborted"])[0]
                keys = ", ".join(repr(r.key) for r in batch[:3]) + (" ..." if len(batch) > 3 else "")
                raise EngineError(f"sglang aborted a request of {keys}: {first}") from None
            if len(outputs) != len(prompts):
                raise EngineError(f"sglang returned {len(outputs)} outputs for {len(prompts)} prompts")
            share = self.cache.add(primed + outputs, self.image_tokens)
            log.info("sglang engine: batch of %d images: %s", len(batch), share.describe())
            for (req, i), out in zip(owners, outputs):
                answers[req.key][i] = self._answer(req, i, out)
        return account(batch, [ImageResult(k, v) for k, v in answers.items()])  # type: ignore[arg-type]

    def _prime(self, batch: list[ImageRequest], prompts: list[str], images: list[str]) -> list[dict]:
        """Prefill each image with several prompts once, before the batch (``max_new_tokens: 0``):
        sent together, a batch's prompts are prefilled together (SGLang's in-batch prefix sharing
        skips prefixes under 32 tokens and does not hold back the rest), so most of them computed
        their image again; primed, every prompt finds its image in the radix cache."""
        firsts, at = [], 0
        for req in batch:
            if len(req.prompts) > 1:
                firsts.append(at)
            at += len(req.prompts)
        if not firsts:
            return []
        return list(
            self.engine.generate(
                prompt=[prompts[i] for i in firsts],
                image_data=[images[i] for i in firsts],
                sampling_params=[{"max_new_tokens": 0} for _ in firsts],
            )
        )

    @staticmethod
    def _answer(req: ImageRequest, i: int, out: dict) -> Answer:
        text = str(out.get("text", "")).strip()
        reason = (out.get("meta_info") or {}).get("finish_reason") or {}
        truncated = (reason.get("type") if isinstance(reason, dict) else reason) == "length"
        choices = req.prompts[i].choices
        if choices is not None and text not in choices:  # the regex makes this impossible unless ignored
            raise EngineError(f"request {req.key!r}: sglang answered {text!r}, not one of the choices")
        return Answer(text, truncated=truncated and choices is None)

    def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None and hasattr(engine, "shutdown"):
            engine.shutdown()
