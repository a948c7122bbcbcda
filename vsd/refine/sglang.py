"""``mode: sglang``: the same prompts through ``sglang.Engine`` on a GPU node.

sglang is imported only when this refiner starts (absent from CPU machines). The model goes through
the same loading policy as the annotation engine (``vsd.serving``): localised (``tiny:``, local,
``s3://``, hub), safetensors only, no remote code, ``engine_args`` that change loading or trust
refused unless ``refine.allow_engine_args`` lists them — all before the engine starts.
Each prompt is sent ``n`` times in a row rather than with sglang's ``n`` parameter: the answer
order is then unambiguous (prompt i owns answers i*n .. i*n+n-1) and the radix cache still
prefills the shared prompt once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vsd.backends.sglang import CPU_ENGINE_ARGS, start_sglang
from vsd.config import ConfigError
from vsd.refine.chat import ChatRefiner, load_tokenizer
from vsd.refine.config import RefineConfig
from vsd.serving import check_engine_args, local_model

EngineFactory = Callable[..., Any]


class SGLangRefiner(ChatRefiner):
    """``engine_factory(model_path=..., **engine_args)`` builds the engine (``sglang.Engine`` by
    default; tests pass a recording stand-in)."""

    def __init__(self, cfg: RefineConfig, engine_factory: EngineFactory | None = None):
        try:
            check_engine_args(cfg.engine_args, cfg.allow_engine_args)
        except ConfigError as exc:
            raise ConfigError(f"refine.{exc}") from None
        model = local_model(
            cfg.model, "refine.model", remote_code=bool(cfg.engine_args.get("trust_remote_code"))
        )
        super().__init__(cfg, load_tokenizer(model))
        args: dict[str, Any] = {"model_path": model, "dtype": cfg.dtype, "load_format": "safetensors"}
        if cfg.device == "cpu":
            args.update(device="cpu", **CPU_ENGINE_ARGS)
        args.update(cfg.engine_args)
        self.engine = start_sglang(
            "refine.mode=sglang", args, factory=engine_factory, hint="use refine.mode=hf or rules on CPU"
        )

    def sampling_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "max_new_tokens": self.cfg.max_new_tokens,
            "temperature": self.cfg.temperature,
        }
        if self.cfg.temperature > 0:
            params["top_p"] = self.cfg.top_p
        return params

    def _generate(self, prompts: list[str], n: int) -> list[list[str]]:
        flat = [p for p in prompts for _ in range(n)]
        outputs = self.engine.generate(prompt=flat, sampling_params=self.sampling_params())
        if len(outputs) != len(flat):
            raise RuntimeError(f"sglang returned {len(outputs)} answers for {len(flat)} prompts")
        texts = [o["text"] for o in outputs]
        return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]

    def close(self) -> None:
        engine, self.engine = getattr(self, "engine", None), None
        if engine is not None:
            engine.shutdown()
