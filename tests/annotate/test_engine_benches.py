"""The engine benchmarks run end to end on tiny shapes (CPU): they print their RATIO lines."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_annotate_tiny_path(capsys, tmp_path):
    import json

    out = tmp_path / "rows.json"
    assert (
        _load("gpu_annotate").main(
            [
                "--tiny",
                "--images",
                "4",
                "--naive-batch",
                "6",
                "--max-new-tokens",
                "4",
                "--variants",
                "auto,matmul",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert re.search(r"^RATIO gpu_annotate [0-9.]+ target 2.5 (PASS|FAIL)$", text, re.M)
    [row] = json.loads(out.read_text())
    assert row["size"] == "tiny" and row["naive_ips"] > 0 and set(row["variants"]) == {"auto", "matmul"}


def test_prefix_sharing_small(capsys, tiny_llava_dir):
    assert (
        _load("prefix_sharing").main(
            ["--images", "1", "--k", "1", "--max-new-tokens", "3", "--model", tiny_llava_dir]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert re.search(r"^k=1 \(3 prompts/image\): independent [0-9.]+ images/s", text, re.M)
    assert re.search(r"^RATIO prefix_sharing [0-9.]+ target 2 (PASS|FAIL)$", text, re.M)
