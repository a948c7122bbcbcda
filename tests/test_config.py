"""vsd.config: typed configs from YAML + dotted overrides, one-line errors naming the field."""

from __future__ import annotations

import dataclasses

import pytest

from vsd import config as vconfig
from vsd.config import ConfigError, describe


@dataclasses.dataclass
class Inner:
    rank: int = describe("rank", 8, ge=1, help="adapter rank")
    lr: float = describe("lr", 1e-4, help="learning rate")


@dataclasses.dataclass
class Limits:
    """One field per kind of declared limit (`describe`'s bounds, pattern, choices)."""

    size: int = describe("size", 8, ge=8, le=4096, help="an integer range")
    share: float = describe("share", 0.5, gt=0, le=1, help="a half-open interval")
    drop: float = describe("drop", 0.1, ge=0, lt=1, help="the other half-open interval")
    scale: float = describe("scale", 1.0, gt=0, help="strictly positive")
    budget: int | None = describe("budget", None, ge=1, help="optional: null passes")
    device: str = describe("device", "auto", pattern=vconfig.DEVICE, help="a device name")
    mode: str = describe("mode", "a", choices=["a", "b"], help="a choice")


@dataclasses.dataclass
class Outer:
    name: str = describe("name", "x", help="a name")
    mode: str = describe("mode", "rules", help="mode", choices=["rules", "hf", "off"])
    on: bool = describe("on", False, help="a switch")
    tags: list[str] = describe("tags", factory=list, help="tags")
    extra: dict = describe("extra", factory=dict, help="passthrough")
    inner: Inner = describe("inner", factory=Inner, help="nested")


@pytest.mark.parametrize(
    "override, message",
    [
        ("size=4", "size: must be in 8..4096, got 4"),
        ("size=5000", "size: must be in 8..4096, got 5000"),
        ("share=0", "share: must be in (0, 1], got 0.0"),
        ("drop=1", "drop: must be in [0, 1), got 1.0"),
        ("scale=-2", "scale: must be > 0, got -2.0"),
        ("budget=0", "budget: must be >= 1, got 0"),
        ("device=gpu", "device: must be auto, cpu, cuda or cuda:N, got 'gpu'"),
        ("device=cuda:x", "device: must be auto, cpu, cuda or cuda:N, got 'cuda:x'"),
        ("mode=c", "mode: must be one of ['a', 'b'], got 'c'"),
    ],
)
def test_declared_limits_are_checked_in_one_place_with_one_line(override, message):
    with pytest.raises(ConfigError) as err:
        vconfig.from_dict(Limits, {}, [override])
    assert str(err.value) == message
    good = vconfig.from_dict(Limits, {}, ["size=4096", "share=1", "drop=0", "budget=null", "device=cuda:1"])
    assert (good.size, good.share, good.drop, good.budget, good.device) == (4096, 1.0, 0.0, None, "cuda:1")


def test_a_config_built_in_code_is_checked_the_same_way():
    with pytest.raises(ConfigError, match=r"^size: must be in 8\.\.4096, got 2$"):
        vconfig.check(Limits(size=2))
    vconfig.check(Limits())


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: demo\ninner:\n  rank: 4\ntags: [a, b]\n")
    cfg = vconfig.load(Outer, str(path), ["inner.lr=3e-4", "on=true", "extra.k=[1, 2]", "mode=off"])
    assert cfg == Outer(
        name="demo", mode="off", on=True, tags=["a", "b"], extra={"k": [1, 2]}, inner=Inner(rank=4, lr=3e-4)
    )
    assert vconfig.from_dict(Outer, vconfig.to_dict(cfg)) == cfg  # the dump reloads


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["inner.rnak=3"], "inner.rnak: unknown field"),
        (["inner.rank=0"], "inner.rank: must be >= 1, got 0"),
        (["inner.rank=true"], "inner.rank: expected an integer, got True"),
        (["inner.rank=2.5"], "inner.rank: expected an integer, got 2.5"),
        (["inner.lr=fast"], "inner.lr: expected a number, got 'fast'"),
        (["mode=vllm"], "mode: must be one of ['rules', 'hf', 'off'], got 'vllm'"),
        (["tags=oops"], "tags: expected a list, got 'oops'"),
        (["on=maybe"], "on: expected true/false, got 'maybe'"),
        (["inner=3"], "inner: expected a mapping, got int"),
        (["novalue"], "novalue: an override must look like key.sub=value"),
    ],
)
def test_bad_values_name_the_field_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as err:
        vconfig.load(Outer, None, overrides)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_yaml_12_booleans_and_dates_stay_strings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: 2026-11-26\nmode: off\n")
    cfg = vconfig.load(Outer, str(path))
    assert (cfg.name, cfg.mode) == ("2026-11-26", "off")


def test_file_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        vconfig.load(Outer, str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match=r"line \d+: invalid YAML"):
        vconfig.load(Outer, str(bad))
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        vconfig.load(Outer, str(top))


def test_help_text_lists_every_field():
    text = vconfig.help_text(Outer)
    for name in ("name", "mode", "inner.rank", "inner.lr"):
        assert name in text
    assert "adapter rank" in text
