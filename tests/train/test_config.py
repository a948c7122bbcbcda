"""Configs: every shipped file loads; a bad one fails before Ray starts, with one line naming the field."""

from __future__ import annotations

import glob
import os

import pytest

from vsd.config import ConfigError, from_dict, load
from vsd.train.config import TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "jobs", "configs", "train-*.yaml")))


def _job_main():
    """jobs/train.py's main (jobs/ is a folder of scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("jobs_train", os.path.join(REPO, "jobs", "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_there_are_cpu_and_paper_configs():
    names = {os.path.basename(c) for c in CONFIGS}
    assert {"train-tiny-cpu.yaml", "train-llava15-13b.yaml", "train-llava-next-13b.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_shipped_config_loads_and_opens_with_its_command(path):
    cfg = load(TrainConfig, path)
    first = open(path).readline()
    assert first.startswith("# ") and ("vsd train" in first or "jobs/train.py" in first)
    assert os.path.basename(path) in first
    if "13b" in path:
        assert cfg.lora.rank == 128 and cfg.lora.alpha == 256 and cfg.optim.lr == 2e-4
        assert cfg.deepspeed.zero_stage == 3 and cfg.use_bf16 and cfg.scaling.use_gpu
        assert cfg.scaling.num_workers == 8 and not cfg.lora.train_projector


@pytest.mark.parametrize(
    "overrides, field",
    [
        (["deepspeed.zero_stage=4"], "deepspeed.zero_stage"),
        (["optim.lrr=1"], "optim.lrr"),
        (["data.synthetic.scenes=0", "data.uri="], "data.uri"),
        (["lora.rank=0"], "lora.rank"),
        (["precision=bf16"], "precision"),
    ],
)
def test_bad_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError) as err:
        load(TrainConfig, os.path.join(REPO, "jobs", "configs", "train-tiny-cpu.yaml"), overrides)
    assert str(err.value).startswith(field + ":") and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "argv, field",
    [
        (["deepspeed.zero_stage=4"], "deepspeed.zero_stage"),
        (["no_such_key=1"], "no_such_key"),
        (["data.synthetic.scenes=0", "data.uri=/nonexistent/instructions"], "data.uri"),
    ],
)
def test_cli_and_job_fail_before_ray_with_one_line(argv, field, capsys, tmp_path):
    import ray

    from vsd.cli import main

    job_main = _job_main()

    base = [
        "--config",
        os.path.join(REPO, "jobs", "configs", "train-tiny-cpu.yaml"),
        "--out",
        str(tmp_path / "run"),
    ]
    was_up = ray.is_initialized()
    assert main(["train", *base, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vsd: error: {field}:") and "\n" not in err
    assert job_main([*base, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"train: error: {field}:") and "\n" not in err
    assert ray.is_initialized() == was_up  # nothing started a cluster
    assert not (tmp_path / "run").exists()  # nor wrote anything


def test_help_config_lists_every_field(capsys):
    from vsd.cli import main

    assert main(["train", "--help-config"]) == 0
    out = capsys.readouterr().out
    for key in (
        "deepspeed.zero_stage",
        "optim.grad_accum",
        "lora.rank",
        "fault.kill_at_step",
        "checkpoint.keep_n",
    ):
        assert key in out


def test_default_config_needs_data():
    with pytest.raises(ConfigError, match="^data.uri: missing dataset path"):
        from_dict(TrainConfig, {})
