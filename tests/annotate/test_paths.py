"""Paths mean what the user typed: absolute before any task, input and output apart by any spelling."""

from __future__ import annotations

import os

import pytest

from tests.fixtures.infra import REPO
from vsd.annotate.config import load_config
from vsd.annotate.paths import check_apart
from vsd.config import ConfigError


def _config(*overrides: str):
    return load_config(str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"), list(overrides))


def test_every_local_path_is_made_absolute_where_the_user_typed_it(tmp_path, monkeypatch):
    (tmp_path / "photos").mkdir()
    (tmp_path / "model").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = _config("input.uri=photos", "output=out", "engine.model=model", "input.allowed_roots=[extra]")
    cfg.check_paths()
    assert cfg.input.uri == str(tmp_path / "photos") and cfg.output == str(tmp_path / "out")
    assert cfg.engine.model == str(tmp_path / "model") and cfg.input.allowed_roots == [
        str(tmp_path / "extra")
    ]
    hub = _config("input.uri=photos", "output=s3://bucket/out", "engine.model=llava-hf/llava-1.5-13b-hf")
    hub.check_paths()
    assert hub.engine.model == "llava-hf/llava-1.5-13b-hf" and hub.output == "s3://bucket/out"


def test_output_and_input_in_each_other_are_refused_by_any_spelling(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    os.symlink(photos, tmp_path / "link")
    monkeypatch.chdir(tmp_path)
    cases = {
        ("photos", str(photos)): "is the input folder itself",
        ("photos", "./photos/../photos/out"): "is inside the input",
        (str(photos), "link/out"): "is inside the input",  # through a symlink into the input
        ("link", "photos"): "is the input folder itself",
        ("photos/sub", "photos"): "input.uri: .* is inside the output",
        ("s3://b/photos", "s3://b/photos/out"): "is inside the input",
    }
    for (inp, out), message in cases.items():
        with pytest.raises(ConfigError, match=message):
            cfg = _config(f"input.uri={inp}", f"output={out}")
            cfg.check_paths()
    check_apart("s3://b/photos", "s3://b/photos-out")  # a sibling prefix, not inside
    check_apart(str(tmp_path / "manifest.jsonl"), str(tmp_path / "out"))  # a manifest lists its files
