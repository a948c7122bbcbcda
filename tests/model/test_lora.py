"""LoRA reaches the language model only; the projector trains only when asked."""

from __future__ import annotations

import pytest

from vsd import config
from vsd.config import ConfigError
from vsd.errors import VSDError
from vsd.model.loader import load_model
from vsd.model.lora import LoraSettings, attach_lora, matching_modules, trainable_parameter_names


@pytest.fixture
def base(tiny_llava_dir):
    model, _ = load_model(tiny_llava_dir, dtype="float32")
    return model


@pytest.mark.parametrize("train_projector", [False, True])
def test_only_lora_and_optionally_projector_train(base, train_projector):
    peft_model = attach_lora(base, LoraSettings(rank=4, train_projector=train_projector))
    names = trainable_parameter_names(peft_model)
    assert names, "something must train"
    assert not [n for n in names if "vision_tower" in n]
    lora = [n for n in names if "lora_" in n]
    projector = [n for n in names if "multi_modal_projector" in n]
    assert set(lora) | set(projector) == set(names)
    assert all("language_model" in n for n in lora)
    # every LM attention and MLP projection of both layers got A and B
    for layer in (0, 1):
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
            assert any(f"layers.{layer}." in n and f".{proj}.lora_B" in n for n in lora), (layer, proj)
    assert bool(projector) == train_projector
    frozen = [n for n, p in peft_model.named_parameters() if not p.requires_grad]
    assert any("vision_tower" in n for n in frozen) and any("embed_tokens" in n for n in frozen)


def test_a_bare_name_list_would_catch_the_vision_tower(base):
    # the reason the default is anchored on language_model
    assert any("vision_tower" in n for n in matching_modules(base, r".*\.(q_proj|v_proj)"))
    with pytest.raises(VSDError, match="vision tower"):
        attach_lora(base, LoraSettings(target_modules=r".*\.(q_proj|v_proj)"))


def test_target_matching_nothing_is_an_error(base):
    with pytest.raises(VSDError, match="matches no Linear"):
        attach_lora(base, LoraSettings(target_modules=r".*language_model.*\.nope_proj"))


def test_settings_validate_as_config():
    cfg = config.from_dict(LoraSettings, {"rank": 8}, ["train_projector=true"])
    assert cfg.rank == 8 and cfg.train_projector is True
    with pytest.raises(ConfigError, match="^rank: must be >= 1"):
        config.from_dict(LoraSettings, {"rank": 0})
    with pytest.raises(ConfigError, match="^dropout"):
        config.from_dict(LoraSettings, {"dropout": 1.5})
    with pytest.raises(ConfigError, match="^target_modules: not a valid regex"):
        config.from_dict(LoraSettings, {"target_modules": "(("})


def test_lm_head_adds_lora_on_the_output_head_only(base, tiny_llava_dir):
    plain = trainable_parameter_names(attach_lora(base, LoraSettings(rank=4)))
    assert not [n for n in plain if "lm_head" in n]
    fresh, _ = load_model(tiny_llava_dir, dtype="float32")
    names = trainable_parameter_names(attach_lora(fresh, LoraSettings(rank=4, lm_head=True)))
    head = [n for n in names if "lm_head" in n]
    assert head and all("lora_" in n for n in head)  # a low-rank update, the head itself frozen
    assert set(names) - set(head) == set(plain)
