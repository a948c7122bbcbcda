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


def test_list_dirs_names_the_folders_one_level_down(root):
    for key in ("s1/b=0001/g.keys", "s1/_meta.json", "s2/l0/r.keys", "s2/l0/deep/x", "top.txt"):
        storage.write_text(storage.join(root, key), "x")
    assert storage.list_dirs(root) == ["s1", "s2"]  # folders only; on S3 the prefixes of objects
    assert storage.list_dirs(storage.join(root, "s2")) == ["l0"]
    assert storage.list_dirs(storage.join(root, "s1", "b=0001")) == []
    assert storage.list_dirs(storage.join(root, "missing")) == []


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


def _aws_env(monkeypatch, **values):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        storage.IMDS_SWITCH,
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    "values, source",
    [
        ({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}, "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"),
        ({"AWS_PROFILE": "night"}, "AWS_PROFILE=night"),
        (
            {"AWS_ROLE_ARN": "arn:aws:iam::1:role/r", "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token"},
            "AWS_ROLE_ARN+AWS_WEB_IDENTITY_TOKEN_FILE (web identity)",
        ),
        ({"AWS_ENDPOINT_URL": "http://minio:9000"}, None),
    ],
)
def test_the_metadata_lookup_is_switched_off_where_it_cannot_apply(monkeypatch, values, source):
    _aws_env(monkeypatch, **values)
    assert storage.credential_source() == source
    assert storage.skip_metadata_lookup() is True and os.environ[storage.IMDS_SWITCH] == "true"


def test_the_metadata_lookup_stays_on_on_a_bare_instance_and_when_the_user_says_so(monkeypatch):
    _aws_env(monkeypatch)  # nothing configured: an EC2 instance role is the only source left
    assert storage.skip_metadata_lookup() is False and storage.IMDS_SWITCH not in os.environ
    _aws_env(monkeypatch, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_EC2_METADATA_DISABLED="false")
    assert storage.skip_metadata_lookup() is False and os.environ[storage.IMDS_SWITCH] == "false"


def test_the_probe_filesystem_is_bounded_and_separate_from_the_runs(s3_server):
    run, probe = storage.filesystem_for("s3://b/x"), storage.probe_filesystem("s3://b/x")
    assert run is not probe and probe is storage.probe_filesystem("s3://b/y")
    options = probe.__reduce__()[1][0]  # what pyarrow pickles: the client's settings
    assert (options["connect_timeout"], options["request_timeout"]) == (
        storage.PROBE["connect_timeout"],
        storage.PROBE["request_timeout"],
    )
    assert options["endpoint_override"] == s3_server.split("://")[1]
    assert run.__reduce__()[1][0]["connect_timeout"] == -1  # the run keeps the SDK's defaults
    assert storage.probe_filesystem("/tmp").type_name == "local"
