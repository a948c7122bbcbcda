"""Read failures sorted by cause: the storage's are retried and deferred, the name's are final
error rows at once; S3 keys are read exactly as listed (``..``, ``.`` and ``//`` included)."""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time

import pyarrow.fs as pafs
import pytest

from vsd import storage
from vsd.annotate.read_causes import s3_cause
from vsd.annotate.stages.read import ReadError, read_bytes


def _fails(uri: str, roots: list[str]) -> ReadError:
    started = time.monotonic()
    with pytest.raises(ReadError) as info:
        read_bytes(uri, roots, 1 << 20, attempts=4)
    assert time.monotonic() - started < 0.4, "a permanent failure must not wait for retries"
    return info.value


def test_path_errors_are_final_error_rows_never_deferred(tmp_path):
    root = str(tmp_path)
    long_path = str(tmp_path / ("x" * 5000 + ".png"))  # ENAMETOOLONG: was deferred every night
    os.symlink("loop-b.png", tmp_path / "loop-a.png")
    os.symlink("loop-a.png", tmp_path / "loop-b.png")  # ELOOP
    (tmp_path / "a-dir.png").mkdir()
    (tmp_path / "file").write_bytes(b"f")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.png"))
    try:
        cases = {
            long_path: ("bad_path", "too long"),
            str(tmp_path / "loop-a.png"): ("link_loop", "loop"),
            str(tmp_path / "a-dir.png"): ("not_a_file", ""),
            str(tmp_path / "file" / "under-a-file.png"): ("missing_file", ""),  # ENOTDIR
            str(tmp_path / "sock.png"): ("not_a_file", ""),  # ENXIO
            str(tmp_path) + "/nul\0byte.png": ("bad_path", "NUL"),
        }
        for uri, (reason, words) in cases.items():
            exc = _fails(uri, [root])
            assert (exc.reason, exc.transient) == (reason, False), (uri[-40:], exc)
            assert words in exc.detail
    finally:
        sock.close()


class _Answers(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that answers every request with the status named by the key."""

    def _answer(self):
        status = int(self.path.split("?")[0].rsplit("/", 1)[-1][1:4])
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _answer

    def log_message(self, *args):
        pass


def test_s3_failures_are_transient_only_when_the_store_failed():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fs = pafs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{server.server_port}",
            scheme="http",
            access_key="k",
            secret_key="s",
            region="us-east-1",
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
        )
        got = {}
        for status in (500, 503, 429, 408, 403, 400):
            with pytest.raises(OSError) as info:
                fs.open_input_stream(f"bucket/k{status}.png").read()
            reason, _, transient = s3_cause(info.value)
            got[status] = (reason, transient)
        with pytest.raises(ValueError) as info:
            fs.get_file_info("bucket/photos//x.png")  # ArrowInvalid: was deferred every night
        got["//"] = s3_cause(info.value)[::2]
    finally:
        server.shutdown()
    assert got == {
        500: ("read_error", True),
        503: ("read_error", True),
        429: ("read_error", True),
        408: ("read_error", True),
        403: ("read_error", False),
        400: ("bad_key", False),
        "//": ("bad_key", False),
    }


def test_s3_keys_are_opaque_dot_segments_and_empty_ones_read_their_own_object(s3_bucket, tmp_path):
    from vsd.corpus import Corpus, sync

    keys = [
        "photos/dotdot.png",
        "photos/sub/../dotdot.png",  # was read as photos/dotdot.png
        "photos//x.png",  # ArrowInvalid, deferred forever
        "photos/./y.png",  # was "not found"
        "photos/sp ace %41+?#.png",
    ]
    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    bucket = s3_bucket[len("s3://") :]
    for key in keys:  # boto3: the exact key (Arrow itself would write some of them elsewhere)
        client.put_object(Bucket=bucket, Key=key, Body=f"content of {key}".encode())
    corpus = Corpus.open_or_create(str(tmp_path / "corpus"))
    sync(corpus, f"{s3_bucket}/photos/")
    uris = sorted(r["uri"] for s in corpus.shards() for r in _rows(s.uri))
    listed = {u[len(s3_bucket) + 1 :] for u in uris}
    assert set(keys) <= listed, listed
    roots = corpus.roots
    for key in keys:
        assert read_bytes(f"{s3_bucket}/{key}", roots, 1 << 20) == f"content of {key}".encode(), key
    exc = _fails(f"{s3_bucket}/photos//missing.png", roots)
    assert (exc.reason, exc.transient) == ("missing_file", False)
    # A '..' never escapes the root: it is a key under the root, read as written.
    exc = _fails(f"{s3_bucket}/photos/../private.png", roots)
    assert exc.reason == "missing_file"
    assert _fails(f"{s3_bucket}/private.png", roots).reason == "outside_root"


def _rows(uri: str) -> list[dict]:
    import pyarrow.parquet as pq

    fs, path = storage.resolve(uri)
    return pq.read_table(path, filesystem=fs).to_pylist()
