"""LoRA on the language model only, as in LLaVA-VSD: vision tower and projector frozen by default.

The default target is a regex anchored on ``language_model``: a bare list such as
``["q_proj", "v_proj"]`` would also catch the CLIP tower's attention (its layers use the same
names), which the paper keeps frozen. ``attach_lora`` refuses any target set that reaches the
vision tower.

A trainable projector (``train_projector: true``) goes through PEFT's ``modules_to_save``: PEFT keeps
a trainable copy of ``multi_modal_projector`` next to the frozen original and saves it inside the
adapter, so one adapter directory holds everything trained and ``merge_and_unload`` swaps the trained
copy in at export.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vsd.config import ConfigError, check, describe
from vsd.errors import VSDError

LM_PROJECTIONS = "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj"
DEFAULT_TARGETS = rf".*language_model.*\.({LM_PROJECTIONS})"
PROJECTOR = "multi_modal_projector"
OUTPUT_HEAD = "lm_head"  # LlavaForConditionalGeneration's output projection (outside language_model)
VISION_MARKERS = ("vision_tower", "vision_model", "image_newline")


@dataclass
class LoraSettings:
    rank: int = describe(
        "rank", 16, ge=1, help="LoRA rank r; higher adds capacity and memory (paper: 128 on 13B)"
    )
    alpha: float = describe(
        "alpha", 32.0, gt=0, help="LoRA scaling: the update is multiplied by alpha / rank"
    )
    dropout: float = describe(
        "dropout", 0.05, ge=0, lt=1, help="dropout on the LoRA input during training, 0..1"
    )
    target_modules: str = describe(
        "target_modules",
        DEFAULT_TARGETS,
        help="regex (full match) of module names that get LoRA; must stay inside the language model",
    )
    train_projector: bool = describe(
        "train_projector", False, help="also train the vision-language projector (frozen in the paper)"
    )
    lm_head: bool = describe(
        "lm_head",
        False,
        help="also LoRA on the output head: needed when the answers use a token the base never "
        "produced (the tiny demo base never wrote a line break, and LoRA on the projections alone "
        "does not raise that token's logit in a short fine-tune)",
    )

    def targets(self) -> str:
        """The full-match regex PEFT gets: ``target_modules``, and the output head with ``lm_head``."""
        return f"(?:{self.target_modules})|{OUTPUT_HEAD}" if self.lm_head else self.target_modules

    def validate(self) -> None:
        try:
            re.compile(self.target_modules)
        except re.error as exc:
            raise ConfigError(f"target_modules: not a valid regex: {exc}") from None


def matching_modules(model, pattern: str) -> list[str]:
    """Names of the Linear modules the regex selects (what PEFT will wrap)."""
    import torch

    rx = re.compile(pattern)
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and rx.fullmatch(n)]


def attach_lora(model, settings: LoraSettings | None = None):
    """Wrap ``model`` in a ``PeftModel`` with LoRA on ``settings.target_modules``; every other
    parameter frozen (the projector trainable only with ``train_projector``)."""
    from peft import LoraConfig, get_peft_model

    settings = settings or LoraSettings()
    check(settings)
    targets = matching_modules(model, settings.targets())
    if settings.lm_head and not any(n == OUTPUT_HEAD for n in targets):
        raise VSDError(f"lora.lm_head: the model has no {OUTPUT_HEAD} Linear module")
    if not targets:
        raise VSDError(
            f"lora.target_modules: {settings.target_modules!r} matches no Linear module of the model"
        )
    vision = [n for n in targets if any(v in n for v in VISION_MARKERS)]
    if vision:
        raise VSDError(
            f"lora.target_modules: {settings.target_modules!r} reaches the vision tower ({vision[0]}); "
            "anchor it on language_model"
        )
    has_projector = any(n.endswith(PROJECTOR) for n, _ in model.named_modules())
    if settings.train_projector and not has_projector:
        raise VSDError(f"lora.train_projector: the model has no {PROJECTOR}")
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.targets(),
        bias="none",
        modules_to_save=[PROJECTOR] if settings.train_projector else None,
    )
    peft_model = get_peft_model(model, config)
    # Belt and braces: whatever PEFT's defaults do, exactly these tensors train.
    for name, param in peft_model.named_parameters():
        param.requires_grad = _is_trainable(name, settings.train_projector)
    return peft_model


def _is_trainable(name: str, train_projector: bool) -> bool:
    if "lora_" in name:
        return True
    return train_projector and PROJECTOR in name and ".modules_to_save." in name


def trainable_parameter_names(model) -> list[str]:
    """Sorted names of the parameters with ``requires_grad``."""
    return sorted(n for n, p in model.named_parameters() if p.requires_grad)
