"""Starting a model, shared by the annotation engines and the refiners.

Both the generate stage (``vsd.annotate.engines``) and the refine stage (``vsd.refine``) load a
model inside a Ray actor: from a ``tiny:`` name, a local directory, an ``s3://`` prefix or a hub
id, on a device, with the CPUs Ray gave the actor. Those steps live here once, so both stages
resolve a model URI and pick a device the same way (starting ``sglang.Engine`` is the sglang
backend's, ``vsd/backends/sglang.py``). Heavy packages (torch) are imported only inside the
functions that need them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from vsd.config import ConfigError
from vsd.errors import VSDError

# sglang.Engine arguments that decide WHAT is loaded or WHICH code runs (remote code, other weight
# formats or files, model config overrides, custom loaders/processors, adapters, draft models):
# refused in engine_args unless the config's allow_engine_args names them. By pattern, so keys a
# later SGLang adds with the same words are caught too; a harmless key caught by it is allowed the
# same way. The model itself is always the config's ``model`` (localised and checked here).
TRUST_KEY = re.compile(
    r"trust|remote|load_format|loader|path|_dir|file|revision|override|custom|url|"
    r"decrypt|lora|impl|parser|chat_template|token_map"
)
NEVER_ALLOWED = ("model_path", "tokenizer_path")

# What a hub model may bring (no pickles, no code): fetched files are checked like local ones.
HUB_FILES = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]


def localize_model(uri: str, what: str = "model") -> str:
    """A local directory for ``tiny:`` names, local paths, ``file://`` and ``s3://`` prefixes
    (downloaded once into the cache); a hub id is returned unchanged. Errors name ``what``."""
    from vsd.model.loader import localize

    try:
        return localize(uri)
    except VSDError as exc:
        msg = str(exc)
        raise VSDError(
            f"{what}: {msg.split(': ', 1)[1]}" if msg.startswith("model: ") else f"{what}: {msg}"
        ) from None


def check_engine_args(engine_args: Mapping[str, Any], allowed: Iterable[str] = ()) -> None:
    """Refuse ``engine_args`` keys that change loading or trust, unless ``allowed`` lists them."""
    allowed = set(allowed)
    for key in sorted(map(str, engine_args)):
        if key in NEVER_ALLOWED:
            raise ConfigError(
                f"engine_args.{key}: the model is the config's model field, not an engine argument"
            )
        if TRUST_KEY.search(key) and key not in allowed:
            raise ConfigError(
                f"engine_args.{key}: changes what the engine loads or runs; refused unless "
                f"allow_engine_args lists it"
            )


def check_model_dir(path: str, what: str = "model", *, remote_code: bool = False) -> None:
    """The loading policy for a local model directory: safetensors only (every shard of an index
    too) and no remote code (a config ``auto_map`` names Python to import) unless ``remote_code``."""
    from vsd.model.loader import check_safetensors

    check_safetensors(path, what)
    config = os.path.join(path, "config.json")
    if not remote_code and os.path.isfile(config):
        try:
            with open(config, encoding="utf-8") as f:
                auto_map = json.load(f).get("auto_map")
        except (OSError, ValueError, AttributeError):
            raise VSDError(f"{what}: {config} is not readable JSON") from None
        if auto_map:
            raise VSDError(
                f"{what}: {path} needs its own Python code (config auto_map); remote code is not run"
            )


def local_model(uri: str, what: str = "model", *, remote_code: bool = False) -> str:
    """A local, checked directory for a model an engine outside our loader will read (SGLang):
    ``tiny:``, local dir and ``s3://`` prefix as in ``localize_model``; a hub id is fetched (cache
    first, safe file kinds only). Refused with one line naming ``what`` before any engine starts."""
    path = localize_model(uri, what)
    if not os.path.isdir(path):
        path = _fetch_hub(path, what)
    check_model_dir(path, what, remote_code=remote_code)
    return path


def _fetch_hub(repo: str, what: str) -> str:
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo, allow_patterns=HUB_FILES)
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, auth: one line either way
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise VSDError(f"{what}: cannot fetch hub model {repo!r}: {first}") from None


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` where torch sees a GPU, else ``cpu``; anything else as given."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def actor_cpus() -> int:
    """The CPUs this process may use: Ray's assignment inside an actor, else the affinity mask."""
    try:
        import ray

        if ray.is_initialized():
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
            if cpus:
                return max(1, int(cpus))
    except Exception:  # noqa: BLE001 - not in Ray (or an old Ray): fall back to the OS view
        pass
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1
