"""``mode: hf``: a transformers chat LLM rewrites sentences, batched, on CPU or GPU.

Generation is left-padded and batched (``batch_size`` prompts x ``n_variants`` samples per call);
the sampling seed is reset per batch so that rerunning a batch (resume after a crash) writes the
same text. The model's answers are untrusted: every one goes through the guardrail in the base.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vsd.errors import VSDError
from vsd.refine.chat import ChatRefiner, load_tokenizer
from vsd.refine.config import RefineConfig
from vsd.serving import resolve_device

GenerateFn = Callable[[list[str], int], list[list[str]]]


class HFRefiner(ChatRefiner):
    """Loads ``cfg.model`` with ``AutoModelForCausalLM``; ``generate_fn`` replaces the model (tests,
    or any other text generator) while prompts, parsing and the guardrail stay the real ones."""

    def __init__(self, cfg: RefineConfig, generate_fn: GenerateFn | None = None):
        tokenizer = load_tokenizer(cfg.model)
        super().__init__(cfg, tokenizer)
        self.tokenizer = tokenizer
        self.model = None
        self._generate_fn = generate_fn
        if generate_fn is None:
            self._load_model()

    def _load_model(self) -> None:
        # Through the project's loader: safetensors only (never pickle), no remote code, and the
        # same hub / local / s3:// / tiny: resolution as the annotation model.
        from vsd.model.loader import load_model

        self.device = resolve_device(self.cfg.device)
        try:
            model, _ = load_model(self.cfg.model, dtype=self.cfg.dtype, device=self.device)
        except VSDError as exc:
            raise VSDError(f"refine.{exc}") from None
        self.model = model
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"  # generation appends on the right of every row

    def _generate(self, prompts: list[str], n: int) -> list[list[str]]:
        if self._generate_fn is not None:
            return self._generate_fn(prompts, n)
        return self._model_generate(prompts, n)

    def _model_generate(self, prompts: list[str], n: int) -> list[list[str]]:
        import torch

        enc = self.tokenizer(
            prompts, return_tensors="pt", padding=True, add_special_tokens=self.prompts.adds_bos(prompts[0])
        ).to(self.device)
        sampling = self.cfg.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.cfg.max_new_tokens,
            "do_sample": sampling,
            "num_return_sequences": n,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sampling:
            kwargs.update(temperature=self.cfg.temperature, top_p=self.cfg.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)  # silence the sampling-knob warnings
        torch.manual_seed(self.cfg.seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        # Rows come back grouped per prompt (prompt i owns rows i*n .. i*n+n-1); drop the prompt part.
        texts = self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]

    def close(self) -> None:
        if self.model is not None:
            self.model = None
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
