"""The model owns its input: image size, visual prompt and token budgets come from the model's record.

An exported model records what it was trained to see (``vsd_export.json``: ``input.image_size``,
``input.visual_prompt``, ``answer_tokens``; `vsd.model.export`), and a training checkpoint records the
same in its ``meta.json`` (an ``engine.adapter`` served as it is). A config is usually written for
*a* model, then reused with another: a 32 px tiny config against a model exported at 64 px would
feed it images a quarter of the pixels it learnt from, and nothing would say so -- the answers just
get worse. So, once per run, before any cluster starts (`vsd annotate`, `vsd ask`):

* a setting the config does not give is taken from the record (the config's default would be a
  guess; the record is a fact about this model);
* a setting the config gives and the record contradicts is refused with one line naming the field,
  unless that section says ``override: true`` -- then it is applied, with one ``vsd: warning:``
  line, so a deliberate experiment stays possible but is never silent;
* a model without a record (``tiny:``, a hub id, a plain checkpoint) changes nothing.

Which settings were *given* is read from the YAML and the overrides themselves (`given_keys`): a
dataclass cannot tell a default from the same value written out.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable
from typing import Any

from vsd import storage
from vsd.config import ConfigError, apply_overrides, load_yaml

IMAGE_SIZE = "stages.preprocess.image_size"
VISUAL_PROMPT = "stages.preprocess.visual_prompt"
MAX_NEW_TOKENS = "engine.max_new_tokens"


@dataclasses.dataclass(frozen=True)
class ModelRecord:
    """What a model says about its own input; ``None`` / empty where it says nothing."""

    where: str  # the record's file, quoted in messages
    image_size: int | None = None
    visual_prompt: bool | None = None
    budgets: dict[int, int] = dataclasses.field(default_factory=dict)  # free-text task -> tokens


def _has_files(model: str) -> bool:
    """A local directory or an s3:// prefix (``tiny:…`` and hub ids carry no record)."""
    if storage.is_s3(model):
        return True
    return ":" not in model and storage.exists(model)


def _from_meta(where: str, meta: dict) -> ModelRecord | None:
    from vsd.annotate.budgets import budget_from

    section = meta.get("input") or {}
    budgets = {int(t): budget_from(s) for t, s in (meta.get("answer_tokens") or {}).items() if int(t) != 1}
    size, prompt = section.get("image_size"), section.get("visual_prompt")
    if size is None and prompt is None and not budgets:
        return None
    return ModelRecord(
        where=where,
        image_size=int(size) if size is not None else None,
        visual_prompt=bool(prompt) if prompt is not None else None,
        budgets=budgets,
    )


def read_record(model: str, adapter: str | None = None) -> ModelRecord | None:
    """The record of ``adapter``'s checkpoint (what the served weights were trained with) or else
    of the exported ``model``; None when neither has one. Unreadable records are a ConfigError:
    a model whose provenance cannot be read should not be guessed at."""
    from vsd.model.checkpoints import META_FILE, resolve_adapter
    from vsd.model.export import EXPORT_META, export_info

    try:
        if adapter:
            found, meta = resolve_adapter(adapter)
            record = _from_meta(storage.join(found.rsplit("/", 1)[0], META_FILE), meta)
            if record is not None:
                return record
        if model and _has_files(model):
            return _from_meta(storage.join(model, EXPORT_META), export_info(model))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"engine.model: cannot read the model's record: {exc}") from None
    return None


def given_keys(path: str | None, overrides: Iterable[str] | None) -> set[str]:
    """The dotted keys a config file plus overrides set explicitly, sections included:
    ``{"stages", "stages.preprocess", ...}``."""
    data = apply_overrides(load_yaml(path) if path else {}, list(overrides or []))
    keys: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                dotted = f"{prefix}{key}"
                keys.add(dotted)
                walk(value, dotted + ".")

    walk(data, "")
    return keys


def _section_override(key: str) -> str:
    return key.rsplit(".", 1)[0] + ".override"


def _check(
    key: str, given: set[str], value: Any, recorded: Any, override: bool, record: ModelRecord, show
) -> list[str]:
    """[] when the value agrees (or was not given); the warning when overridden; else raises."""
    if key not in given or recorded is None or value == recorded:
        return []
    what = f"{key}: {show(value)} contradicts the model's record ({show(recorded)} in {record.where})"
    if not override:
        raise ConfigError(
            f"{what}; drop {key} to use the model's, or set {_section_override(key)}=true to force it"
        )
    return [f"vsd: warning: {what}; applied because {_section_override(key)} is true"]


def resolve(cfg: Any, given: set[str], record: ModelRecord | None) -> list[str]:
    """Fill ``cfg`` (an AnnotateConfig) from ``record`` where the config is silent; refuse a
    contradiction unless its section overrides. Returns the warning lines (already printed)."""
    if record is None:
        return []
    pre, engine = cfg.stages.preprocess, cfg.engine
    warnings: list[str] = []
    warnings += _check(
        IMAGE_SIZE, given, pre.image_size, record.image_size, pre.override, record, lambda v: f"{v} px"
    )
    warnings += _check(
        VISUAL_PROMPT,
        given,
        pre.visual_prompt,
        record.visual_prompt,
        pre.override,
        record,
        lambda v: "boxes drawn" if v else "no boxes drawn",
    )
    if engine.max_new_tokens is not None and record.budgets:
        budgets = ", ".join(f"task {t}: {n}" for t, n in sorted(record.budgets.items()))
        if any(n != engine.max_new_tokens for n in record.budgets.values()):
            what = (
                f"{MAX_NEW_TOKENS}: {engine.max_new_tokens} contradicts the model's record (trained answer "
                f"lengths give {budgets} tokens in {record.where})"
            )
            if not engine.override:
                raise ConfigError(
                    f"{what}; drop it (or {MAX_NEW_TOKENS}=null) to use the model's, or set "
                    "engine.override=true to force it"
                )
            warnings.append(f"vsd: warning: {what}; applied because engine.override is true")
    if IMAGE_SIZE not in given and record.image_size is not None:
        pre.image_size = record.image_size
    if VISUAL_PROMPT not in given and record.visual_prompt is not None:
        pre.visual_prompt = record.visual_prompt
    for line in warnings:
        print(line, file=sys.stderr)
    return warnings


def resolve_against_model(cfg: Any, path: str | None, overrides: Iterable[str] | None) -> Any:
    """`resolve` for a config loaded from ``path`` + ``overrides``: what the commands call."""
    resolve(cfg, given_keys(path, overrides), read_record(cfg.engine.model, cfg.engine.adapter))
    return cfg
