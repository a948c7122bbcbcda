"""vsd.storage: one code path for local paths and s3:// (moto on 127.0.0.1)."""

from __future__ import annotations

import os

import pytest

from vsd import storage


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "root")
    return request.getfixturevalue("s3_bucket") + "/root"


def test_write_read_list_delete(root):
    storage.write_text(storage.join(root, "a", "x.txt"), "hello")
    storage.write_bytes(storage.join(root, "b.bin"), b"\x00\x01")
    assert storage.read_text(storage.join(root, "a/x.txt")) == "hello"
    assert storage.exists(storage.join(root, "b.bin"))
    assert storage.list_files(root) == sorted([storage.join(root, "a", "x.txt"), storage.join(root, "b.bin")])
    assert storage.is_dir(storage.join(root, "a"))
    storage.delete(storage.join(root, "a"))
    assert not storage.exists(storage.join(root, "a", "x.txt"))
    assert storage.list_files(storage.join(root, "missing")) == []


@pytest.mark.parametrize("part", ["..", "../x", "a/../../b", "\\evil"])
def test_join_refuses_escapes(part):
    with pytest.raises(ValueError):
        storage.join("s3://bucket/out", part)


def test_join_drops_empty_and_absolute_prefixes():
    assert storage.join("s3://b/out/", "/run_date=1/", "part.parquet") == "s3://b/out/run_date=1/part.parquet"


def test_local_write_is_atomic_and_leaves_no_temp_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    storage.write_text(str(target), "old")

    def fail(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        storage.write_text(str(target), "new")
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["f.txt"]


def test_s3_endpoint_comes_from_the_environment(s3_server):
    assert storage.s3_endpoint() == os.environ["AWS_ENDPOINT_URL"] == s3_server
    fs, path = storage.resolve("s3://bucket/key/")
    assert path == "bucket/key" and fs.type_name == "s3"
