"""`TrainConfig`: everything `vsd train` needs, typed and described, validated before Ray starts.

One YAML in ``jobs/configs/`` per model x hardware; any field can be overridden from the command
line (``optim.lr=1e-4``). ``validate()`` runs at load time (``vsd.config.load``) so a bad config is
one line naming the field, never a stack trace from inside a Ray worker.
"""

from __future__ import annotations

import dataclasses

from vsd.config import ConfigError, check, describe
from vsd.model.lora import LoraSettings


@dataclasses.dataclass
class ModelConfig:
    base: str = describe(
        "base",
        "tiny:llava",
        help="base LLaVA: a hub id (llava-hf/llava-1.5-13b-hf), a local path, an s3:// "
        "prefix, or tiny:llava[?knob=value&...] to build a tiny offline LLaVA "
        "on the fly (CI, demo)",
    )
    trust_remote_code: bool = describe(
        "trust_remote_code",
        False,
        help="allow model code from the checkpoint (off: only transformers' own LLaVA classes run)",
    )

    def validate(self) -> None:
        if not self.base:
            raise ConfigError("base: must be a hub id, a path or tiny:llava")


@dataclasses.dataclass
class SyntheticDataConfig:
    scenes: int = describe(
        "scenes",
        0,
        ge=0,
        help="number of synthetic scenes to generate and build into an instruction set "
        "(0: use data.uri instead)",
    )
    seed: int = describe("seed", 0, help="seed of the synthetic scenes (same seed, same data)")


@dataclasses.dataclass
class DataConfig:
    uri: str = describe(
        "uri",
        "",
        help="instruction dataset: a `vsd data build` output folder (local or s3://) holding "
        "instructions.parquet and images/, or the parquet file itself",
    )
    synthetic: SyntheticDataConfig = describe(
        "synthetic",
        help="generate a small synthetic set instead of reading `uri`",
        factory=SyntheticDataConfig,
    )
    max_length: int = describe(
        "max_length",
        1024,
        ge=16,
        help="tokens per sample incl. image tokens; longer answers are cut at the tail "
        "(more = fewer truncated answers, more memory)",
    )
    shuffle: bool = describe(
        "shuffle", True, help="shuffle the samples each epoch (seeded by `seed` and the epoch)"
    )
    loader_workers: int = describe(
        "loader_workers",
        0,
        help="DataLoader processes per worker decoding images (0: in the "
        "training process; more keeps a GPU fed, costs CPU and memory)",
    )

    def validate(self) -> None:
        if not self.uri and self.synthetic.scenes == 0:
            raise ConfigError("uri: missing dataset path (or set data.synthetic.scenes > 0)")
        if self.uri and self.synthetic.scenes > 0:
            raise ConfigError("uri: give either data.uri or data.synthetic.scenes, not both")


@dataclasses.dataclass
class DeepSpeedConfig:
    zero_stage: int = describe(
        "zero_stage",
        2,
        help="ZeRO stage: 2 shards optimizer state + gradients, 3 also shards the "
        "weights (needed for 13B on 8x80GB with large batches; more communication)",
        choices=[2, 3],
    )
    offload_optimizer: bool = describe(
        "offload_optimizer", False, help="keep optimizer state in CPU memory (frees GPU memory, slower steps)"
    )


@dataclasses.dataclass
class OptimConfig:
    lr: float = describe("lr", 2e-4, gt=0, help="peak learning rate (AdamW)")
    weight_decay: float = describe("weight_decay", 0.0, help="AdamW weight decay")
    warmup_ratio: float = describe(
        "warmup_ratio", 0.03, ge=0, lt=1, help="fraction of the optimizer steps with a linear warm-up"
    )
    cosine: bool = describe("cosine", True, help="cosine decay to 0 after the warm-up (false: constant)")
    max_grad_norm: float = describe("max_grad_norm", 1.0, ge=0, help="gradient clipping norm (0: off)")
    batch_size: int = describe(
        "batch_size", 4, ge=1, help="samples per worker per micro-step (more: faster, more memory)"
    )
    grad_accum: int = describe(
        "grad_accum",
        1,
        ge=1,
        help="micro-steps per optimizer step; the global batch is batch_size x grad_accum x num_workers",
    )
    epochs: int = describe("epochs", 1, ge=1, help="passes over the data (ignored when max_steps > 0)")
    max_steps: int = describe(
        "max_steps", 0, ge=0, help="optimizer steps to run in total (0: as many as `epochs` give)"
    )


@dataclasses.dataclass
class ScalingConfig:
    num_workers: int = describe("num_workers", 2, ge=1, help="Ray Train workers (one per GPU on GPU nodes)")
    use_gpu: bool = describe(
        "use_gpu", False, help="one GPU per worker, NCCL, bf16; false: CPU workers, gloo, fp32"
    )
    resources_per_worker: dict[str, float] = describe(
        "resources_per_worker",
        help="Ray resources per worker, e.g. {CPU: 8, GPU: 1}",
        factory=lambda: {"CPU": 1},
    )


@dataclasses.dataclass
class CheckpointConfig:
    every_n_steps: int = describe(
        "every_n_steps",
        50,
        ge=1,
        help="save the adapter every N optimizer steps (and at the end); "
        "fewer: less work lost on a failure, more I/O",
    )
    keep_n: int = describe(
        "keep_n", 3, ge=1, help="checkpoints kept in <run>/checkpoints (older ones are deleted)"
    )


@dataclasses.dataclass
class FailureConfig:
    max_failures: int = describe(
        "max_failures", 3, help="worker-group restarts (from the last checkpoint) before the run fails"
    )


@dataclasses.dataclass
class FaultConfig:
    kill_at_step: int = describe(
        "kill_at_step",
        0,
        help="TEST ONLY: the last worker os._exit()s right after this optimizer step "
        "of a run that started from scratch (0: never); proves FailureConfig "
        "restores from the last checkpoint",
    )


@dataclasses.dataclass
class TrainConfig:
    model: ModelConfig = describe("model", help="base model", factory=ModelConfig)
    data: DataConfig = describe("data", help="instruction data", factory=DataConfig)
    lora: LoraSettings = describe("lora", help="LoRA adapter on the language model", factory=LoraSettings)
    deepspeed: DeepSpeedConfig = describe("deepspeed", help="DeepSpeed ZeRO", factory=DeepSpeedConfig)
    optim: OptimConfig = describe("optim", help="optimizer and schedule", factory=OptimConfig)
    precision: str = describe(
        "precision", "auto", help="auto: bf16 on GPU, fp32 on CPU", choices=["auto", "bf16", "fp32"]
    )
    gradient_checkpointing: bool = describe(
        "gradient_checkpointing",
        False,
        help="recompute LM activations in the backward pass (~1/3 more compute, much less activation memory)",
    )
    scaling: ScalingConfig = describe("scaling", help="Ray Train workers", factory=ScalingConfig)
    checkpoint: CheckpointConfig = describe(
        "checkpoint", help="adapter checkpoints", factory=CheckpointConfig
    )
    failure: FailureConfig = describe("failure", help="fault tolerance", factory=FailureConfig)
    fault: FaultConfig = describe("fault", help="fault injection for tests", factory=FaultConfig)
    metrics_every_n_steps: int = describe(
        "metrics_every_n_steps",
        1,
        ge=1,
        help="report metrics every N optimizer steps (each report is a barrier across workers)",
    )
    seed: int = describe("seed", 0, help="seed of LoRA init, shuffling and dropout")

    def validate(self) -> None:
        # Sections left at their defaults were never validated on their own (e.g. an empty data).
        for name in ("model", "data", "lora", "optim", "scaling", "checkpoint"):
            try:
                check(getattr(self, name))
            except ConfigError as exc:
                raise ConfigError(f"{name}.{exc}") from None
        if self.precision == "bf16" and not self.scaling.use_gpu:
            raise ConfigError("precision: bf16 needs scaling.use_gpu (CPU training runs in fp32)")
        if self.fault.kill_at_step and self.scaling.num_workers < 2:
            raise ConfigError("fault.kill_at_step: needs scaling.num_workers >= 2")

    @property
    def use_bf16(self) -> bool:
        return self.precision == "bf16" or (self.precision == "auto" and self.scaling.use_gpu)
