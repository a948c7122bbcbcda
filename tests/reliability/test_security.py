"""Security: a planted secret never reaches an output, a log or the dumped config; remote code and
pickled weights stay off. (Path-like image ids: `test_bad_inputs`; loader refusals of pickle and
remote code: tests/model/test_loader.py, tests/model/test_export.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.fixtures.annotate import read_rows
from tests.fixtures.infra import REPO
from tests.fixtures.reliability import record_case
from vsd import storage
from vsd.annotate.index import Output

PLANTED = f"planted-{uuid.uuid4().hex}"


def env_or(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _leaks(blob: bytes | str, where: str, secret: str) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [where] if secret.encode() in data else []


def _parquet_text(uri: str) -> str:
    """A Parquet file's rows, schema and key-value metadata as text (the bytes are compressed)."""
    import pyarrow.parquet as pq

    fs, path = storage.resolve(uri)
    table = pq.read_table(path, filesystem=fs)
    meta = pq.read_metadata(fs.open_input_file(path))
    return json.dumps(table.to_pylist(), default=str) + str(table.schema.metadata) + str(meta.metadata)


@pytest.mark.slow
def test_planted_secrets_never_appear_in_outputs_logs_or_config(rel_corpus, s3_bucket):
    """`jobs/annotate.py` as a nightly pod runs it: its own Ray cluster, credentials only in the
    environment (inherited by every Ray worker). Then grep every output object, the captured
    stdout/stderr and every Ray log file of that cluster for the planted values."""
    out = f"{s3_bucket}/annotations"
    ray_tmp = tempfile.mkdtemp(prefix="vsdsec-", dir="/tmp")  # short: Ray's socket paths are limited
    env = {
        **os.environ,
        "AWS_SECRET_ACCESS_KEY": PLANTED,
        "HF_TOKEN": PLANTED + "-hf",
        "VSD_API_KEY": PLANTED + "-api",
        "RAY_TMPDIR": ray_tmp,
        "PYTHONPATH": str(REPO),
        "RAY_raylet_start_wait_time_s": env_or("RAY_raylet_start_wait_time_s", "180"),
    }
    env.pop("RAY_ADDRESS", None)
    try:
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "jobs/annotate.py"),
                "--config",
                str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"),
                "--input",
                rel_corpus["manifest"],
                "--output",
                out,
                "progress_bars=false",
                "run_date=2026-11-26",
                "stages.write.resources.batch_size=8",
                f"engine.sglang.engine_args={{api_key: {PLANTED}-cfg}}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        leaks = _leaks(proc.stdout, "stdout", PLANTED) + _leaks(proc.stderr, "stderr", PLANTED)
        outputs = storage.list_files(out)
        assert any("/__vsd/runs/" in u for u in outputs) and any(u.endswith("_README.md") for u in outputs)
        for uri in outputs:
            leaks += _leaks(storage.read_bytes(uri), uri, PLANTED)
            if uri.endswith(".parquet"):
                leaks += _leaks(_parquet_text(uri), uri + " (decoded)", PLANTED)
        logs = [p for p in Path(ray_tmp).rglob("*") if p.is_file() and not p.is_symlink()]
        assert any(p.suffix in (".log", ".out", ".err") for p in logs), "no Ray logs found to check"
        for path in logs:
            try:
                leaks += _leaks(path.read_bytes(), str(path), PLANTED)
            except OSError:
                pass
        [run_id] = Output(out).runs()
        manifest = Output(out).run_record(run_id)
        assert manifest["config"]["engine"]["sglang"]["engine_args"] == {"api_key": "<redacted>"}
        rows = read_rows(out)
        record_case(
            "security-planted secret (env AWS/HF token + a config api_key)",
            "security",
            rows=rows,
            expected_ids={r["row_id"] for r in rows},
            rows_in=rel_corpus["input_lines"],
            reported={"dup"},
            note=f"grepped {len(outputs)} output objects (Parquet decoded too), stdout/stderr and "
            f"{len(logs)} Ray session files: {len(leaks)} leaks",
        )
        assert not leaks, leaks[:20]
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_config_dump_never_carries_credentials():
    from vsd.annotate.config import load_config
    from vsd.config import to_dict
    from vsd.redact import redact_config

    cfg = load_config(
        str(REPO / "jobs/configs/annotate-nightly-llava15-13b-sglang.yaml"),
        [
            "input.uri=https://user:" + PLANTED + "@example.com/corpus/",
            "output=s3://out/",
            f"engine.sglang.engine_args={{hf_token: {PLANTED}, authorization: {PLANTED}, "
            f"key: {PLANTED}, nested: {{aws_secret_access_key: {PLANTED}}}, tp_size: 1}}",
            "engine.max_new_tokens=96",
        ],
    )
    dumped = json.dumps(redact_config(cfg))
    assert PLANTED not in dumped and '"tp_size": 1' in dumped
    assert '"max_new_tokens": 96' in dumped  # an allow-list does not hide harmless fields named *token*
    from vsd.annotate.config import AnnotateConfig

    names = json.dumps(to_dict(AnnotateConfig())).lower()
    assert not any(w in names for w in ("secret", "password", "access_key")), (
        "credentials must not be config fields"
    )


def test_remote_code_is_off_unless_configured():
    from vsd.annotate.engines import EngineConfig
    from vsd.config import to_dict
    from vsd.train.config import TrainConfig

    assert "trust_remote_code" not in json.dumps(to_dict(EngineConfig()))  # annotation: never (no switch)
    assert TrainConfig().model.trust_remote_code is False
    for name in os.listdir(REPO / "jobs/configs"):
        assert "trust_remote_code: true" not in (REPO / "jobs/configs" / name).read_text().lower(), name


class _Bomb:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling this creates the marker


def test_training_checkpoints_load_with_safetensors_never_pickle(tmp_path, tiny_adapter_dir):
    """A checkpoint whose adapter is only a pickle: refused, and the pickle never ran."""
    import pickle

    from vsd.model.checkpoints import list_checkpoints
    from vsd.train.checkpoint import latest, load_adapter_state

    marker = tmp_path / "pickle-ran"
    ckpt = tmp_path / "run" / "checkpoints" / "checkpoint_00000002"
    shutil.copytree(tiny_adapter_dir, ckpt / "adapter")
    os.remove(ckpt / "adapter" / "adapter_model.safetensors")
    (ckpt / "adapter" / "adapter_model.bin").write_bytes(pickle.dumps(_Bomb(str(marker))))
    (ckpt / "meta.json").write_text(json.dumps({"step": 2}))
    assert [s for s, _ in list_checkpoints(str(tmp_path / "run"))] == [2]
    with pytest.raises(Exception):  # noqa: B017 - any error, as long as the pickle never runs
        load_adapter_state(latest(str(tmp_path / "run")))
    assert not marker.exists()


def test_refine_model_with_only_pickle_weights_is_refused(tiny_text_lm_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    from vsd.errors import VSDError
    from vsd.refine.config import RefineConfig
    from vsd.refine.llm import HFRefiner

    pickled = tmp_path / "pickled-lm"
    shutil.copytree(tiny_text_lm_dir, pickled)
    state = load_file(str(pickled / "model.safetensors"))
    os.remove(pickled / "model.safetensors")
    torch.save(state, pickled / "pytorch_model.bin")
    with pytest.raises(VSDError, match="safetensors"):
        HFRefiner(RefineConfig(mode="hf", model=str(pickled), device="cpu", dtype="float32"))


def test_manifest_rows_pointing_outside_their_root_are_error_rows_never_reads(
    ray_local, s3_server, s3_bucket, tmp_path, capsys
):
    """The issue's done-when: absolute paths, file://, ../, another bucket and /dev/zero in a
    manifest become ``outside_root`` error rows without being read; the good rows are annotated
    and the run exits 0. The same manifest on S3 cannot reach another bucket either."""
    from tests.fixtures.annotate import build_corpus
    from vsd.cli import main

    corpus = tmp_path / "corpus"
    good = build_corpus(str(corpus), 3, seed=21)
    secret = tmp_path / "secret.txt"
    secret.write_text(f"AWS_SECRET_ACCESS_KEY={PLANTED}\n")
    import boto3

    private = f"private-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=private)
    storage.write_bytes(f"s3://{private}/photo.png", storage.read_bytes(next(iter(good))))
    outside = [
        str(secret),
        f"file://{secret}",
        "../secret.txt",
        "images/../../secret.txt",
        "/dev/zero",
        "/proc/self/environ",
        f"s3://{private}/photo.png",
    ]
    lines = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    lines += [{"image": uri} for uri in outside] + [{"pairs": []}]  # and one row with no URI at all
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = str(tmp_path / "out")
    code = main(
        [
            "annotate",
            "--config",
            str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"),
            "--input",
            str(corpus / "manifest.jsonl"),
            "--output",
            out,
            "progress_bars=false",
            "run_date=2026-11-26",
        ]
    )
    printed = capsys.readouterr()
    assert code == 0 and "Traceback" not in printed.err
    rows = read_rows(out)
    by_status = {}
    for row in rows:
        by_status.setdefault(row["error"].split(":")[0] if row["error"] else "ok", []).append(
            row["source_uri"]
        )
    assert sorted(by_status["ok"]) == sorted(good)
    # The four spellings of secret.txt resolve to one file: one row, the repeats reported.
    assert sorted(by_status["outside_root"]) == sorted(
        [str(secret), "/dev/zero", "/proc/self/environ", f"s3://{private}/photo.png"]
    )
    assert len(rows) == len(good) + 4 and printed.out.count("listed again") == 3
    assert "no image URI" in printed.out  # the URI-less row is reported, not fatal
    for row in rows:
        assert PLANTED not in json.dumps(row, default=str)
    # On S3: a manifest in s3://<bucket>/corpus may not read s3://<private>/...
    manifest = f"{s3_bucket}/corpus/manifest.jsonl"
    storage.write_text(manifest, json.dumps({"uri": f"s3://{private}/photo.png"}) + "\n")
    s3_out = f"{s3_bucket}/out"
    assert (
        main(
            [
                "annotate",
                "--config",
                str(REPO / "jobs/configs/annotate-tiny-cpu.yaml"),
                "--input",
                manifest,
                "--output",
                s3_out,
                "progress_bars=false",
            ]
        )
        == 0
    )
    [row] = read_rows(s3_out)
    assert row["error"].startswith("outside_root:")
