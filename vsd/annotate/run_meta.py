"""What one annotation run records about itself: `RunMeta`, carried by every row it writes, and
`write_json`, how its JSON records (the run manifest, the model record) are written.

The pipeline (driver) and the write stage (workers) both need them; they are not the write
stage's, so they live here rather than in ``stages/write.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from vsd import storage


@dataclass(frozen=True)
class RunMeta:
    """What every row of one run carries besides its annotation (and where the run writes)."""

    output: str
    run_date: str
    run_id: str
    model: str
    adapter_sha256: str | None
    prompt_version: str


def write_json(uri: str, data: dict) -> None:
    storage.write_text(uri, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
