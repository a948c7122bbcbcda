"""The training step on a real DeepSpeed engine (one gloo rank, in-process) and on plain PyTorch:
only LoRA trains, the vision tower and projector stay bit-identical, the loss falls."""

from __future__ import annotations

import pytest
import torch

from vsd.config import from_dict
from vsd.train.config import TrainConfig


def _setup(train_config_dict, **sections):
    from vsd.model.loader import load_model
    from vsd.model.lora import attach_lora
    from vsd.train.collator import LlavaCollator
    from vsd.train.data import InstructionDataset, synthetic_dataset

    cfg = from_dict(TrainConfig, train_config_dict(**sections))
    torch.manual_seed(0)
    model, processor = load_model(cfg.model.base, dtype="float32")
    model = attach_lora(model, cfg.lora)
    model.train()
    data = InstructionDataset(synthetic_dataset(cfg.data))
    batch = LlavaCollator(processor, cfg.data.max_length)([data[i] for i in range(len(data))])
    return cfg, model, batch


def _frozen_state(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}


def test_lr_schedule_warms_up_then_decays_to_zero():
    from vsd.train.loop import lr_factor

    factors = [lr_factor(i, 100, 10, True) for i in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert lr_factor(100, 100, 10, True) == pytest.approx(0.0)
    assert lr_factor(50, 100, 0, False) == 1.0


def test_deepspeed_config_follows_the_train_config(train_config_dict):
    from vsd.train.loop import deepspeed_config

    cfg = from_dict(
        TrainConfig,
        train_config_dict(
            deepspeed={"zero_stage": 3, "offload_optimizer": True},
            optim={"grad_accum": 4, "max_grad_norm": 0.5},
        ),
    )
    ds = deepspeed_config(cfg, world_size=8)
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["train_batch_size"] == 3 * 4 * 8 and ds["gradient_accumulation_steps"] == 4
    assert ds["gradient_clipping"] == 0.5 and ds["bf16"]["enabled"] is False
    assert ds["zero_allow_untested_optimizer"] is True


def test_deepspeed_step_trains_only_lora(train_config_dict, single_process_group):
    import deepspeed

    from vsd.train.loop import DeepSpeedStepper, deepspeed_config, make_optimizer, make_scheduler, run_step

    cfg, model, batch = _setup(train_config_dict)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("vision_tower" in n or "multi_modal_projector" in n for n in trainable)
    before = _frozen_state(model)
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    optimizer = make_optimizer(model, cfg.optim.lr, 0.0)
    scheduler = make_scheduler(optimizer, 8, 0.0, False)
    engine, *_ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg, world_size=1)
    )
    stepper = DeepSpeedStepper(engine)
    losses = [run_step(stepper, [batch]).loss for _ in range(8)]
    assert losses[-1] < losses[0] - 0.2, losses
    after = dict(engine.module.named_parameters())
    for name, tensor in before.items():
        assert torch.equal(after[name].detach(), tensor), f"{name} changed"
    assert any(not torch.equal(after[n].detach(), t) for n, t in lora_before.items())


def test_projector_trains_only_when_asked(train_config_dict):
    from vsd.train.loop import TorchStepper, make_optimizer, run_step

    cfg, model, batch = _setup(train_config_dict, lora={"train_projector": True})
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("multi_modal_projector" in n for n in trainable)
    assert not any("vision_tower" in n for n in trainable)
    vision = {n: p.detach().clone() for n, p in model.named_parameters() if "vision_tower" in n}
    stepper = TorchStepper(model, make_optimizer(model, cfg.optim.lr, 0.0), None, 1, 1.0)
    for _ in range(2):
        run_step(stepper, [batch])
    now = dict(model.named_parameters())
    assert all(torch.equal(now[n].detach(), t) for n, t in vision.items())
