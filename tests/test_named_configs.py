"""``--config tiny-cpu``: the shipped configs by name, from any folder and from a built wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.infra import REPO
from vsd.cli import main
from vsd.config import ConfigError
from vsd.named_configs import CONFIG_DIR, known_names, resolve_config

JOBS_CONFIGS = REPO / "jobs" / "configs"


def test_every_job_config_ships_as_a_link_to_its_one_source():
    """jobs/configs is the source; vsd/assets/configs links to each file, so nothing drifts."""
    shipped = {p.name: p for p in CONFIG_DIR.iterdir()}
    assert set(shipped) == {p.name for p in JOBS_CONFIGS.glob("*.yaml")}
    for name, path in shipped.items():
        assert path.is_symlink(), f"{name}: a copy would drift from jobs/configs/{name}"
        assert path.resolve() == (JOBS_CONFIGS / name).resolve()


def test_names_resolve_per_job():
    assert known_names("annotate") == ["nightly-llava15-13b-sglang", "tiny-cpu", "tiny-sglang-cpu"]
    assert known_names("train") == ["llava-next-13b", "llava15-13b", "tiny-cpu"]
    for value in ("tiny-cpu", "annotate-tiny-cpu"):
        found = Path(resolve_config(value, "annotate"))
        assert found.read_bytes() == (JOBS_CONFIGS / "annotate-tiny-cpu.yaml").read_bytes()
    assert Path(resolve_config("tiny-cpu", "train")).name == "train-tiny-cpu.yaml"


def test_paths_stay_paths(tmp_path):
    assert (
        resolve_config("jobs/configs/annotate-tiny-cpu.yaml", "annotate")
        == "jobs/configs/annotate-tiny-cpu.yaml"
    )
    assert resolve_config("mine.yaml", "train") == "mine.yaml"  # missing: the loader says file not found
    assert resolve_config("s3://bucket/cfg", "train") == "s3://bucket/cfg"
    assert resolve_config(None, "train") is None


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        resolve_config("tiny-gpu", "train")
    assert str(err.value) == (
        "config: 'tiny-gpu' is neither a file nor a known train config name "
        "(known: llava-next-13b, llava15-13b, tiny-cpu; or give a path to a YAML file)"
    )


def test_by_name_from_any_folder(tmp_path, monkeypatch, capsys):
    """The config loads (the first complaint is about what only the command line gives)."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", "tiny-cpu"]) == 2
    assert capsys.readouterr().err.strip() == (
        "vsd: error: out: --out (the run folder, local or s3://) is required"
    )
    assert main(["annotate", "--config", "tiny-cpu"]) == 2
    assert capsys.readouterr().err.strip() == "vsd: error: input.uri: required (--input URI)"
    assert main(["annotate", "--config", "nightly"]) == 2
    assert "known: nightly-llava15-13b-sglang, tiny-cpu, tiny-sglang-cpu" in capsys.readouterr().err


@pytest.mark.slow
def test_a_wheel_carries_the_configs_as_files(tmp_path):
    """`pip install .` (the container image) has no jobs/: the wheel must hold the files the links
    point at. Built from a copy, so the checkout gets no build/ folder."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (src / name).write_bytes((REPO / name).read_bytes())
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("vsd", "jobs"):
        shutil.copytree(REPO / folder, src / folder, symlinks=True, ignore=ignore)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        env={**os.environ, "PIP_NO_INDEX": "1"},
        timeout=300,
    )
    [wheel] = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        for path in JOBS_CONFIGS.glob("*.yaml"):
            info = z.getinfo(f"vsd/assets/configs/{path.name}")
            assert (info.external_attr >> 16) & 0o170000 == 0o100000, f"{path.name} is not a plain file"
            assert z.read(info) == path.read_bytes()
