"""The credential mechanisms the manifests allow work with vsd's own S3 layer (real pyarrow S3 client,
moto on 127.0.0.1): a mounted AWS shared-credentials file and nothing in the environment.

IRSA (the default in cluster/) uses the same AWS SDK credential chain through
AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, but its STS call cannot be pointed at moto, so only
the shape of that configuration is checked (tests/cluster/test_security.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import boto3

from tests.cluster.kube import REPO

READ = "from vsd import storage; import sys; sys.stdout.write(storage.read_bytes(sys.argv[1]).decode())"


def _read(uri: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", READ, uri], env=env, capture_output=True, text=True, timeout=120
    )


def test_mounted_credentials_file_is_used_and_env_keys_are_not_needed(s3_bucket, tmp_path):
    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).put_object(
        Bucket=s3_bucket[len("s3://") :], Key="corpus/a.txt", Body=b"hello"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") or k in ("AWS_ENDPOINT_URL", "AWS_REGION")
    }
    env.update(
        PYTHONPATH=str(REPO),
        HOME=str(tmp_path),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
    )
    secret = tmp_path / "secret"  # what the Secret volume holds, mode 0440 as mounted
    secret.mkdir()
    (secret / "credentials").write_text(
        "[default]\naws_access_key_id = mounted\naws_secret_access_key = mounted-file-key\n"
    )
    os.chmod(secret / "credentials", 0o440)

    anonymous = _read(
        f"{s3_bucket}/corpus/a.txt", {**env, "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "missing")}
    )
    assert anonymous.returncode != 0 and "ACCESS_DENIED" in anonymous.stderr  # no credentials at all: refused
    with_file = _read(
        f"{s3_bucket}/corpus/a.txt", {**env, "AWS_SHARED_CREDENTIALS_FILE": str(secret / "credentials")}
    )
    assert with_file.returncode == 0, with_file.stderr
    assert with_file.stdout == "hello"
