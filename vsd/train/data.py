"""Training inputs: the instruction rows every worker reads (a built set or a synthetic one).

Each worker reads the (small, text-only) instruction table itself and loads images lazily by
index, so sharding is a seeded ``DistributedSampler`` over row indices: the same seed and epoch
give the same order on every relaunch, which is what lets a resumed run skip exactly the batches
it already trained on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import shutil
import tempfile

from vsd import storage
from vsd.config import ConfigError

INSTRUCTIONS = "instructions.parquet"


def dataset_root(uri: str) -> tuple[str, str]:
    """(folder the image paths are relative to, parquet URI) of a `vsd data build` output."""
    uri = str(uri).rstrip("/")
    if uri.endswith(".parquet"):
        return posixpath.dirname(uri) if storage.is_s3(uri) else os.path.dirname(os.path.abspath(uri)), uri
    return uri, storage.join(uri, INSTRUCTIONS)


def check_dataset(uri: str) -> None:
    """Fail with one line, before Ray starts, when the instruction table is not there."""
    _, table = dataset_root(uri)
    if not storage.exists(table):
        raise ConfigError(f"data.uri: no instruction table at {table}")


def _key(prefix: str, spec: dict) -> str:
    return prefix + "-" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


class InstructionDataset:
    """Map-style dataset of ``{"image": PIL.Image, "prompt", "answer", "id"}`` samples."""

    def __init__(self, uri: str):
        import pyarrow.parquet as pq

        self.root, table_uri = dataset_root(uri)
        fs, path = storage.resolve(table_uri)
        table = pq.read_table(path, filesystem=fs, columns=["id", "image", "prompt", "answer"])
        self.rows = table.to_pylist()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        from PIL import Image

        row = self.rows[index]
        image_uri = (
            row["image"]
            if "://" in row["image"] or os.path.isabs(row["image"])
            else storage.join(self.root, row["image"])
        )
        image = Image.open(io.BytesIO(storage.read_bytes(image_uri))).convert("RGB")
        return {"id": row["id"], "image": image, "prompt": row["prompt"], "answer": row["answer"]}


# -- on-the-fly inputs (tiny model, synthetic data) so the CPU config runs on a fresh checkout ----


def _build_once(key: str, build) -> str:
    """``build(tmp_dir)`` into the cache unless already there; atomic, so workers on one node that
    race each other never see half a directory (every node builds its own identical copy)."""
    from vsd.model.tiny import cache_root

    final = os.path.join(cache_root(), key)
    if os.path.exists(os.path.join(final, ".complete")):
        return final
    os.makedirs(cache_root(), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=key + ".tmp-", dir=cache_root())
    try:
        build(tmp)
        open(os.path.join(tmp, ".complete"), "w").close()
        try:
            os.rename(tmp, final)
        except OSError:  # another process won the race; its copy is identical
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def synthetic_dataset(data_cfg) -> str:
    """Generate ``data.synthetic.scenes`` scenes and build their instruction set (cached by spec, so
    every worker of a node reuses one build); returns the built folder."""
    from vsd.data.instructions import build
    from vsd.data.synthetic import generate
    from vsd.data.vsd_json import read_vsd

    spec = {"scenes": data_cfg.synthetic.scenes, "seed": data_cfg.synthetic.seed, "size": 64}

    def make(out: str) -> None:
        scenes = generate(spec["scenes"], os.path.join(out, "scenes"), seed=spec["seed"], size=spec["size"])
        read = read_vsd(scenes.vsd1, scenes.vsd2, scenes.images)
        build(read.records, os.path.join(out, "instructions"), seed=spec["seed"])

    return os.path.join(_build_once(_key("synthetic", spec), make), "instructions")
