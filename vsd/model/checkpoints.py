"""The training-run checkpoint layout, shared by `vsd train` (writer) and `vsd export` (reader).

```
<run>/checkpoints/checkpoint_<step>/adapter/     PEFT save_pretrained output (adapter_config.json,
                                                 adapter_model.safetensors)
<run>/checkpoints/checkpoint_<step>/optimizer/   one file per training rank: its ZeRO optimizer state
                                                 (resume only; absent in adapter-only checkpoints)
<run>/checkpoints/checkpoint_<step>/meta.json    {"base_model": ..., "step": ..., "optimizer": {...}},
                                                 written LAST
```

``meta.json`` is the completion marker: a checkpoint without it (a crash mid-write) is ignored, so
resume and export only ever see whole checkpoints. Works the same on local paths and ``s3://``.
"""

from __future__ import annotations

import json
import re

from vsd import storage
from vsd.errors import VSDError

CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_PREFIX = "checkpoint_"
ADAPTER_DIR = "adapter"
OPTIMIZER_DIR = "optimizer"
META_FILE = "meta.json"
ADAPTER_CONFIG = "adapter_config.json"
_STEP = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


def checkpoint_uri(run_uri: str, step: int) -> str:
    """Where the checkpoint of ``step`` lives (zero-padded so names also sort by step)."""
    return storage.join(run_uri, CHECKPOINTS_DIR, f"{CHECKPOINT_PREFIX}{int(step):08d}")


def read_meta(checkpoint: str) -> dict:
    uri = storage.join(checkpoint, META_FILE)
    try:
        meta = json.loads(storage.read_text(uri))
    except FileNotFoundError:
        raise VSDError(f"checkpoint: {uri} not found (an unfinished checkpoint?)") from None
    except (OSError, ValueError) as exc:
        raise VSDError(f"checkpoint: cannot read {uri}: {exc}") from None
    if not isinstance(meta, dict):
        raise VSDError(f"checkpoint: {uri}: expected a JSON object")
    return meta


def list_checkpoints(run_uri: str) -> list[tuple[int, str]]:
    """``(step, checkpoint_uri)`` of every complete checkpoint of a run, ascending by step."""
    root = storage.join(run_uri, CHECKPOINTS_DIR)
    files = storage.list_files(root)
    present = set(files)
    found = []
    for f in files:
        if not f.endswith("/" + META_FILE):
            continue
        ckpt = f[: -len(META_FILE) - 1]
        name = storage.basename(ckpt)
        if not name.startswith(CHECKPOINT_PREFIX):
            continue
        if storage.join(ckpt, ADAPTER_DIR, ADAPTER_CONFIG) not in present:
            continue
        m = _STEP.match(name)
        step = int(m.group(1)) if m else int(read_meta(ckpt).get("step", -1))
        found.append((step, ckpt))
    return sorted(found)


def latest_checkpoint(run_uri: str) -> str:
    """The URI of the highest-step complete checkpoint of a run; VSDError when there is none."""
    found = list_checkpoints(run_uri)
    if not found:
        raise VSDError(f"checkpoint: no complete checkpoint under {storage.join(run_uri, CHECKPOINTS_DIR)}")
    return found[-1][1]


def resolve_adapter(uri: str) -> tuple[str, dict]:
    """``(adapter_uri, meta)`` for an adapter dir, a checkpoint dir or a whole run (its latest
    checkpoint). ``meta`` is ``{}`` for a bare adapter dir without a checkpoint around it."""
    uri = str(uri).rstrip("/")
    if storage.exists(storage.join(uri, ADAPTER_CONFIG)):
        parent = uri.rsplit("/", 1)[0] if "/" in uri else "."
        meta = read_meta(parent) if storage.exists(storage.join(parent, META_FILE)) else {}
        return uri, meta
    if storage.exists(storage.join(uri, ADAPTER_DIR, ADAPTER_CONFIG)):
        return storage.join(uri, ADAPTER_DIR), read_meta(uri)
    if storage.exists(storage.join(uri, CHECKPOINTS_DIR)):
        ckpt = latest_checkpoint(uri)
        return storage.join(ckpt, ADAPTER_DIR), read_meta(ckpt)
    raise VSDError(f"checkpoint: {uri} is neither an adapter dir, a checkpoint dir nor a training run")
