"""Preflight: a newcomer's mistakes end in one `vsd: error: <field>: …` line, in seconds, before Ray.

The command-line cases run `vsd annotate` as a user does (a subprocess) and check what the issue
asks: under 20 s, at most 10 lines, the last one ``vsd: error: <field>:``. S3 runs only against
127.0.0.1: moto for the reachable cases, a closed port for an unreachable endpoint, a port that
accepts and never answers for a stalled one, and a server answering S3's own 403 ``AccessDenied``
(moto does not check credentials) for refused credentials.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.fixtures.infra import REPO
from vsd import storage
from vsd.preflight import (
    PreflightError,
    Target,
    annotate_targets,
    check,
    check_annotate,
    skip_unreachable_metadata,
)

TINY = str(REPO / "jobs/configs/annotate-tiny-cpu.yaml")
NIGHTLY = str(REPO / "jobs/configs/annotate-nightly-llava15-13b-sglang.yaml")
DEAD_ENDPOINT = "http://127.0.0.1:9"  # discard port: nothing listens, connections are refused


# ---------------------------------------------------------------------------------- helpers


def vsd_cli(*args: str, env: dict | None = None, unset: tuple[str, ...] = ()) -> tuple[float, list[str], int]:
    """`vsd …` in a fresh process: (seconds, output lines, exit status)."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    for name in unset:
        full.pop(name, None)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "vsd.cli", *args],
        env=full,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return time.monotonic() - started, lines, proc.returncode


def assert_one_line_failure(result: tuple[float, list[str], int], field: str) -> str:
    seconds, lines, code = result
    assert code == 2, lines
    assert seconds < 20, (seconds, lines)
    assert len(lines) <= 10, lines
    assert lines[-1].startswith(f"vsd: error: {field}: "), lines
    assert not any("Traceback" in line for line in lines), lines
    return lines[-1]


@contextmanager
def http_server(status: int, body: bytes = b""):
    """A real HTTP server on 127.0.0.1 answering every request with ``status`` (and ``body``
    except to HEAD, as S3 does); yields (endpoint URL, list of request lines seen)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            seen.append(self.requestline)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            payload = b"" if self.command == "HEAD" else body
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_endpoint():
    """A port that accepts connections and never answers (a stalled proxy or firewall)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def s3_env(monkeypatch, endpoint: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def failure(targets: list[Target]) -> str:
    with pytest.raises(PreflightError) as info:
        check(targets)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"not decoded by the preflight")
    return folder


# ---------------------------------------------------------------------------------- the CLI, as a user runs it


def test_device_gpu_is_refused_by_the_config_check(images, tmp_path):
    line = assert_one_line_failure(
        vsd_cli(
            "annotate",
            "--config",
            TINY,
            "--input",
            str(images),
            "--output",
            str(tmp_path / "out"),
            "engine.device=gpu",
        ),
        "engine.device",
    )
    assert "'gpu'" in line and "cuda" in line


def test_an_output_that_is_a_file_fails_before_ray(images, tmp_path):
    target = tmp_path / "annotations.parquet"
    target.write_bytes(b"PAR1")
    line = assert_one_line_failure(
        vsd_cli("annotate", "--config", TINY, "--input", str(images), "--output", str(target)), "output"
    )
    assert str(target) in line and "is a file" in line
    assert target.read_bytes() == b"PAR1"


def test_an_unreachable_endpoint_fails_fast_without_asking_the_instance_metadata(images, tmp_path):
    """AWS_EC2_METADATA_DISABLED and the region are unset (a newcomer's shell): the tool itself must
    keep the SDK away from the metadata service, which it would ask for a region (here a counting
    server named by AWS_EC2_METADATA_SERVICE_ENDPOINT). The second run opts back in
    (AWS_EC2_METADATA_DISABLED=false): the counter does see the lookup when it is on."""
    unset = ("AWS_EC2_METADATA_DISABLED", "AWS_REGION", "AWS_DEFAULT_REGION")
    with http_server(404) as (imds, seen):
        env = {
            "AWS_ENDPOINT_URL": DEAD_ENDPOINT,
            "AWS_ACCESS_KEY_ID": "dummy",
            "AWS_SECRET_ACCESS_KEY": "dummy",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds,
        }
        args = (
            "annotate",
            "--config",
            TINY,
            "--input",
            "s3://corpus/images/",
            "--output",
            str(tmp_path / "out"),
        )
        line = assert_one_line_failure(vsd_cli(*args, env=env, unset=unset), "input.uri")
        assert seen == []
        for part in (
            "s3://corpus/images/",
            "cannot reach S3",
            DEAD_ENDPOINT,
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        ):
            assert part in line
        opted_in = vsd_cli(*args, env={**env, "AWS_EC2_METADATA_DISABLED": "false"}, unset=unset[1:])
        assert_one_line_failure(opted_in, "input.uri")
        assert seen, "with the lookup switched back on, the SDK asks the metadata service"
    assert not (tmp_path / "out").exists()


def test_the_nightly_config_on_an_unreachable_s3_model(images, tmp_path):
    env = {"AWS_ENDPOINT_URL": DEAD_ENDPOINT}
    line = assert_one_line_failure(
        vsd_cli(
            "annotate",
            "--config",
            NIGHTLY,
            "--input",
            str(images),
            "--output",
            str(tmp_path / "out"),
            env=env,
            unset=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        ),
        "engine.model",
    )
    assert "s3://vsd-models/llava15-13b-vsd-merged/" in line and DEAD_ENDPOINT in line
    assert "no credentials" in line and "AWS_PROFILE" in line and "AWS_WEB_IDENTITY_TOKEN_FILE" in line


# ---------------------------------------------------------------------------------- what is checked


def test_targets_of_a_run(annotate_config, tmp_path):
    cfg = annotate_config(
        str(tmp_path / "m.jsonl"),
        "s3://b/out",
        "engine.model=Qwen/Qwen2-VL",
        f"engine.adapter={tmp_path}/adapter",
        "stages.refine.mode=hf",
        "stages.refine.model=s3://models/qwen/",
    )
    assert [(t.field, t.uri, t.want) for t in annotate_targets(cfg)] == [
        ("input.uri", str(tmp_path / "m.jsonl"), "file"),
        ("output", "s3://b/out", "output"),
        ("engine.adapter", f"{tmp_path}/adapter", "dir"),  # the hub id is the loader's to resolve
        ("stages.refine.model", "s3://models/qwen/", "dir"),
    ]
    rules = annotate_config(str(tmp_path), "out", "stages.refine.mode=rules", "stages.refine.model=/nowhere")
    assert [t.field for t in annotate_targets(rules)] == [
        "input.uri",
        "output",
    ]  # tiny:llava, no refine model
    vsd = annotate_config(
        str(tmp_path / "v1.json"), "out", f"input.image_dir={tmp_path}", "input.vsd2=v2.json"
    )
    assert [(t.field, t.want) for t in annotate_targets(vsd)][:3] == [
        ("input.uri", "file"),
        ("input.image_dir", "dir"),
        ("input.vsd2", "file"),
    ]


def test_local_kinds(tmp_path, images, annotate_config):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("{}\n")
    assert "is a folder" in failure([Target("input.uri", str(images), "file", "a manifest")])
    assert "is a file, not a folder" in failure([Target("engine.model", str(manifest), "dir")])
    assert "not a corpus (no _corpus.json)" in failure([Target("input.uri", str(images), "corpus")])
    assert (
        failure([Target("engine.adapter", str(tmp_path / "none"), "dir", "an adapter")])
        == f"engine.adapter: {tmp_path / 'none'}: not found (expected an adapter)"
    )
    ok = annotate_config(str(manifest), str(tmp_path / "new" / "deeper" / "out"), f"engine.model={images}")
    assert check_annotate(ok) < 5
    assert not (tmp_path / "new").exists()  # checking writes nothing that stays


def test_local_output_under_a_file_or_unwritable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert (
        failure([Target("output", str(blocker / "out"), "output")])
        == f"output: {blocker / 'out'}: cannot be created: {blocker} is a file"
    )
    assert "not writable" in failure([Target("output", "/proc/vsd-out", "output")])


def test_s3_reachable_cases(s3_bucket, monkeypatch):
    storage.write_bytes(f"{s3_bucket}/images/a.jpg", b"x")
    storage.write_bytes(f"{s3_bucket}/out-object", b"x")
    check(
        [
            Target("input.uri", f"{s3_bucket}/images/", "any"),
            Target("input.uri", f"{s3_bucket}/images/a.jpg", "any"),
            Target("output", f"{s3_bucket}/out", "output"),
        ]
    )
    assert storage.list_files(f"{s3_bucket}/out") == []  # the probe was deleted
    missing = failure([Target("input.uri", f"{s3_bucket}/imgs/", "any")])
    assert missing.startswith(f"input.uri: {s3_bucket}/imgs/: nothing at or under this prefix; endpoint ")
    no_bucket = failure([Target("engine.model", "s3://no-such-bucket-vsd/llava/", "dir")])
    assert (
        "bucket 'no-such-bucket-vsd' does not exist" in no_bucket
        and os.environ["AWS_ENDPOINT_URL"] in no_bucket
    )
    assert "is an object; the output root is a prefix" in failure(
        [Target("output", f"{s3_bucket}/out-object", "output")]
    )
    assert "not a corpus" in failure([Target("input.uri", f"{s3_bucket}/images", "corpus")])
    assert "does not exist" in failure([Target("output", "s3://no-such-bucket-vsd/out", "output")])


def test_s3_access_denied_names_the_credentials(monkeypatch):
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied'
        b"</Message><RequestId>R1</RequestId><HostId>H1</HostId></Error>"
    )
    with http_server(403, body) as (endpoint, seen):
        s3_env(monkeypatch, endpoint)
        line = failure([Target("output", "s3://annotations/vsd/", "output")])
        assert seen
    assert line.startswith("output: s3://annotations/vsd/: access denied (ACCESS_DENIED")
    assert f"endpoint {endpoint} (from AWS_ENDPOINT_URL)" in line
    assert "credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in line
    assert "allowed to write under it" in line and "AWS_PROFILE" in line


@pytest.mark.slow
def test_a_stalled_endpoint_is_given_up_on_in_bounded_time(monkeypatch):
    with silent_endpoint() as endpoint:
        s3_env(monkeypatch, endpoint)
        started = time.monotonic()
        line = failure([Target("input.uri", "s3://corpus/images/", "any")])
        seconds = time.monotonic() - started
    attempts, connect, read = (
        storage.PROBE["attempts"],
        storage.PROBE["connect_timeout"],
        storage.PROBE["request_timeout"],
    )
    assert seconds < attempts * (connect + read) + 3 < 20
    assert "cannot reach S3" in line and endpoint in line


def test_an_unreachable_metadata_service_is_not_waited_on(monkeypatch):
    """Nothing configured (a laptop without credentials): one connect to the metadata address
    decides. Nothing there -> the lookup is switched off; something there (an instance) -> left on."""
    for name in (storage.IMDS_SWITCH, "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    with silent_endpoint() as listening:  # accepts connections: an instance's metadata service
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", listening)
        assert skip_unreachable_metadata() is False and storage.IMDS_SWITCH not in os.environ
    closed = listening  # the same port, closed now: nothing answers
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", closed)
    started = time.monotonic()
    assert skip_unreachable_metadata() is True and os.environ[storage.IMDS_SWITCH] == "true"
    assert time.monotonic() - started < 1
    monkeypatch.setenv(storage.IMDS_SWITCH, "false")  # the user's choice is kept
    assert skip_unreachable_metadata() is False and os.environ[storage.IMDS_SWITCH] == "false"
