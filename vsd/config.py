"""Typed job configs: dataclasses loaded from YAML, overridable with dotted ``key=value`` pairs.

Each job defines its own config dataclass next to its code (``vsd/train/config.py``,
``vsd/annotate/config.py``, ...); this module is the shared machinery. Every field carries a
``help`` string in its metadata (``field(default=..., metadata={"help": "..."})``), which is what
``vsd <job> --help-config`` prints. A bad config fails *before* any Ray cluster starts, with one
line that names the field (``ConfigError: train.zero_stage: must be one of [2, 3], got 4``).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import re
import types
import typing
from typing import Any, TypeVar

import yaml

from vsd.errors import ConfigError

T = TypeVar("T")


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false are booleans, so `mode: off` or
    `refine.mode=off` stays the string "off" (YAML 1.1 would turn on/off/yes/no into bools)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def yaml_load(text: str):
    """Parse YAML the way every config file and override is parsed."""
    return yaml.load(text, Loader=_Yaml12Loader)


class Pattern(typing.NamedTuple):
    """A string field's allowed form: a regex (whole value) and how the error line says it."""

    regex: str
    says: str


DEVICE = Pattern(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N")


def describe(
    name: str,
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: list | None = None,
    factory: Any = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    pattern: Pattern | None = None,
) -> Any:
    """A dataclass field with a description and what it allows: ``choices``, numeric bounds
    (``ge``/``gt``/``le``/``lt``; None passes, for optional fields) or a string ``pattern``, all
    checked by `check_fields`, in one place, with one line naming the field."""
    meta: dict[str, Any] = {"help": help}
    if choices is not None:
        meta["choices"] = list(choices)
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    if bounds:
        meta["bounds"] = bounds
    if pattern is not None:
        meta["pattern"] = pattern
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _bounds_text(bounds: dict[str, float], integer: bool) -> str:
    low = ("ge", bounds["ge"]) if "ge" in bounds else ("gt", bounds["gt"]) if "gt" in bounds else None
    high = ("le", bounds["le"]) if "le" in bounds else ("lt", bounds["lt"]) if "lt" in bounds else None
    if low and high:
        if integer and low[0] == "ge" and high[0] == "le":
            return f"in {low[1]}..{high[1]}"
        return f"in {'[' if low[0] == 'ge' else '('}{low[1]}, {high[1]}{']' if high[0] == 'le' else ')'}"
    op, value = low or high  # type: ignore[misc]
    return f"{ {'ge': '>=', 'gt': '>', 'le': '<=', 'lt': '<'}[op] } {value}"


def _within(value: Any, bounds: dict[str, float]) -> bool:
    checks = {"ge": value.__ge__, "gt": value.__gt__, "le": value.__le__, "lt": value.__lt__}
    return all(checks[op](bound) for op, bound in bounds.items())


def check_fields(obj: Any) -> None:
    """The declared limits of ``obj``'s own fields (`describe`'s choices, bounds, pattern); raises
    ``ConfigError("<field>: must be ..., got ...")`` for the first one broken. Nested sections are
    checked by their own call (`from_dict` builds them first)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"{f.name}: must be one of {choices}, got {value!r}")
        bounds = f.metadata.get("bounds")
        if bounds and value is not None and not _within(value, bounds):
            integer = isinstance(value, int) and all(isinstance(b, int) for b in bounds.values())
            raise ConfigError(f"{f.name}: must be {_bounds_text(bounds, integer)}, got {value!r}")
        pattern = f.metadata.get("pattern")
        if pattern is not None and not re.fullmatch(pattern.regex, str(value)):
            raise ConfigError(f"{f.name}: must be {pattern.says}, got {value!r}")


def check(obj: Any) -> None:
    """A config object built in code (not by `from_dict`): its declared limits, then its own
    ``validate`` (cross-field rules)."""
    check_fields(obj)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: cannot be {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float):
        return _number(value, tp, where)
    if tp is str:
        if isinstance(value, (dt.date, dt.datetime)):  # YAML reads 2026-11-26 as a date
            return value.isoformat()
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _number(value: Any, tp: type, where: str) -> int | float:
    """An int or float field's value; a bool is never a number (YAML `true` is not 1)."""
    if not isinstance(value, bool):
        if isinstance(value, int) or (tp is float and isinstance(value, float)):
            return tp(value)
        if isinstance(value, str):
            try:
                return tp(value)
            except ValueError:
                pass
    raise ConfigError(f"{where}: expected {'an integer' if tp is int else 'a number'}, got {value!r}")


def _build(cls: type[T], data: dict, prefix: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{where}: unknown field (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        where = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: required field is missing")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    try:
        check_fields(obj)
        if callable(check):
            check()
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(f"{prefix}.{msg}" if prefix else msg) from None
    return obj


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=3`` -> (["a", "b"], 3); the value is parsed as YAML so lists and numbers work."""
    if "=" not in item:
        raise ConfigError(f"{item}: an override must look like key.sub=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    data = copy.deepcopy(data)
    for item in overrides or []:
        path, value = parse_override(item)
        node = data
        for key in path[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{'.'.join(path)}: {key} is not a mapping")
        node[path[-1]] = value
    return data


def load_yaml(path: str) -> dict:
    from vsd import storage

    try:
        text = storage.read_text(path)
    except FileNotFoundError:
        raise ConfigError(f"config: file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc}") from None
    try:
        data = yaml_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config: {path}{where}: invalid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path}: the top level must be a mapping")
    return data


def from_dict(cls: type[T], data: dict, overrides: list[str] | None = None) -> T:
    return _build(cls, apply_overrides(data, overrides), "")


def load(cls: type[T], path: str | None = None, overrides: list[str] | None = None) -> T:
    """Load ``cls`` from a YAML file (optional) plus dotted overrides; raises ConfigError."""
    data = load_yaml(path) if path else {}
    return from_dict(cls, data, overrides)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def help_text(cls: type, prefix: str = "") -> str:
    """One line per field: name, type, default, description; nested configs indented by dots."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            lines.append(f"{name}: {f.metadata.get('help', '')}")
            lines.append(help_text(tp, name + "."))
            continue
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        )
        lines.append(f"{name} ({_type_name(tp)}, default {default!r}): {f.metadata.get('help', '')}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Command-line plumbing shared by every job with a typed config
# ----------------------------------------------------------------------------------------------


def add_config_arguments(
    parser: Any, *, example_config: str, example_overrides: str, job: str | None = None
) -> None:
    """``--config FILE|NAME``, ``--help-config`` and trailing ``key=value`` overrides, the same for
    every job; with ``job``, ``--config NAME`` also takes a shipped config by name (`vsd.named_configs`)."""
    named = ""
    if job:
        from vsd.named_configs import known_names

        named = f"; or a shipped config by name: {', '.join(known_names(job))}"
    parser.add_argument("--config", help=f"YAML config ({example_config}{named})")
    parser.add_argument(
        "--help-config", action="store_true", help="list every config field with its description and exit"
    )
    parser.add_argument("overrides", nargs="*", help=f"dotted overrides, e.g. {example_overrides}")


def config_from_args(
    cls: type[T], args: Any, flags: dict[str, str] | None = None, loader: Any = None, job: str | None = None
) -> T | None:
    """The job's config from ``--config``, then the named flags (``{"input": "input.uri"}``: a flag
    given on the command line overrides that key), then the dotted overrides. None when
    ``--help-config`` asked for the field list instead (it has been printed). With ``job``,
    ``--config`` may name a shipped config (``tiny-cpu``: `vsd.named_configs`)."""
    if getattr(args, "help_config", False):
        print(help_text(cls))
        return None
    overrides = list(getattr(args, "overrides", None) or [])
    for flag, key in (flags or {}).items():
        value = getattr(args, flag, None)
        if value:
            overrides.append(f"{key}={value}")
    path = args.config
    if job:
        from vsd.named_configs import resolve_config

        path = resolve_config(path, job)
    return (loader or (lambda path, ov: load(cls, path, ov)))(path, overrides)
