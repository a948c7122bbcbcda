"""URI -> (pyarrow filesystem, path) for local paths and ``s3://`` URIs.

Every job reads and writes through here so that local runs, CI (moto on 127.0.0.1) and real
clusters (S3 with IAM / Kubernetes Secrets) share one code path. Credentials and the endpoint come
only from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``): never from a
config file, so they never end up in a dumped config or a manifest.

The instance-metadata service (IMDS, 169.254.169.254) is the SDK's last resort for credentials and
its source of a region: off EC2 every lookup waits on a dead address, and with static keys, a web
identity (IRSA), a profile or a custom endpoint it cannot supply anything used. So in those cases
``AWS_EC2_METADATA_DISABLED=true`` is set for this process (and the Ray workers it starts) unless
the user set that variable already; ``AWS_EC2_METADATA_DISABLED=false`` turns the lookup back on.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import uuid
from functools import lru_cache
from urllib.parse import urlparse

import pyarrow.fs as pafs


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def s3_endpoint() -> str | None:
    """The S3 endpoint override from the environment, if any (moto, MinIO, other clouds)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


# A night's run retries patiently (a 503 burst must not fail it); a yes/no check before the run
# must answer in seconds, so `probe_filesystem` bounds connect and read time and tries twice.
RUN_ATTEMPTS = 8
PROBE = {"attempts": 2, "connect_timeout": 3.0, "request_timeout": 5.0}
STATIC_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
WEB_IDENTITY = ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")
IMDS_SWITCH = "AWS_EC2_METADATA_DISABLED"


def s3_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def credential_source() -> str | None:
    """Where the SDK will take credentials from, as a user would name it; None when only the
    instance metadata (or nothing) is left."""
    if all(os.environ.get(v) for v in STATIC_KEYS):  # the SDK's order: keys, profile, web identity, container
        return "/".join(STATIC_KEYS)
    if os.environ.get("AWS_PROFILE"):
        return f"AWS_PROFILE={os.environ['AWS_PROFILE']}"
    if all(os.environ.get(v) for v in WEB_IDENTITY):
        return "+".join(WEB_IDENTITY) + " (web identity)"
    if os.environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or os.environ.get(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI"
    ):
        return "the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_*)"
    return None


def skip_metadata_lookup() -> bool:
    """Set ``AWS_EC2_METADATA_DISABLED=true`` when the metadata service cannot apply (see the
    module doc) and the user has not chosen; returns whether the lookup is off now."""
    if IMDS_SWITCH not in os.environ and (credential_source() or s3_endpoint()):
        os.environ[IMDS_SWITCH] = "true"
    return os.environ.get(IMDS_SWITCH, "").strip().lower() == "true"


@lru_cache(maxsize=8)
def _s3_filesystem(
    endpoint: str | None,
    region: str,
    attempts: int = RUN_ATTEMPTS,
    connect_timeout: float | None = None,
    request_timeout: float | None = None,
) -> pafs.S3FileSystem:
    skip_metadata_lookup()
    kwargs: dict = {
        "region": region,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=attempts),
        "connect_timeout": connect_timeout,
        "request_timeout": request_timeout,
    }
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
        # Path-style addressing: MinIO/moto serve buckets under the path, not a virtual host.
        kwargs["force_virtual_addressing"] = False
    return pafs.S3FileSystem(**kwargs)


def filesystem_for(uri: str) -> pafs.FileSystem:
    if is_s3(uri):
        return _s3_filesystem(s3_endpoint(), s3_region())
    return pafs.LocalFileSystem()


def probe_filesystem(uri: str) -> pafs.FileSystem:
    """Like `filesystem_for`, with bounded timeouts and two attempts: for checks that must fail
    fast (`vsd.preflight`), never for the run's own reads and writes."""
    if is_s3(uri):
        return _s3_filesystem(
            s3_endpoint(), s3_region(), PROBE["attempts"], PROBE["connect_timeout"], PROBE["request_timeout"]
        )
    return pafs.LocalFileSystem()


def needs_exact_key(key: str) -> bool:
    """Whether an S3 key has a segment that Arrow's client drops or refuses: empty (``a//b``),
    ``.`` or ``..`` (curl removes dot segments from a request path, so ``a/../b`` would name ``b``).
    On S3 these are ordinary keys; such keys are listed by prefix and read with boto3."""
    return any(part in ("", ".", "..") for part in key.split("/"))


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """Split a URI into the filesystem that serves it and the path inside that filesystem."""
    uri = str(uri)
    if is_s3(uri):
        # Not urlparse: a key may hold "?" or "#", which a URL parser would cut off as a query or fragment.
        bucket, _, key = uri[len("s3://") :].partition("/")
        path = (bucket + "/" + key.lstrip("/")).rstrip("/")
        return filesystem_for(uri), path
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI; refuses parts that would escape it (``..``, absolute parts)."""
    out = str(uri).rstrip("/")
    for part in parts:
        for piece in str(part).split("/"):
            if piece in ("", "."):
                continue
            if piece == ".." or piece.startswith("\\"):
                raise ValueError(f"path part {part!r} escapes {uri!r}")
            out = out + "/" + piece
    return out


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_dir(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def read_bytes(uri: str) -> bytes:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole object. Local files go through a temp file + rename so readers never see half
    a file; an S3 PUT is atomic by itself."""
    fs, path = resolve(uri)
    if is_s3(uri):
        with fs.open_output_stream(path) as f:
            f.write(data)
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # A full disk or a kill mid-write must not leave a half file behind.
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def makedirs(uri: str) -> None:
    fs, path = resolve(uri)
    fs.create_dir(path, recursive=True)


def list_files(uri: str, recursive: bool = True) -> list[str]:
    """Every file below ``uri`` as a full URI, sorted (deterministic order for stable ids)."""
    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return []
    if info.type == pafs.FileType.File:
        return [uri]
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=recursive, allow_not_found=True))
    prefix = "s3://" if is_s3(uri) else ""
    return sorted(prefix + i.path for i in infos if i.type == pafs.FileType.File)


def list_dirs(uri: str) -> list[str]:
    """The names of the folders directly below ``uri``, sorted: one non-recursive listing (on S3
    a delimiter listing: a folder is the common prefix of its objects), not every file below."""
    fs, path = resolve(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
    return sorted(posixpath.basename(i.path.rstrip("/")) for i in infos if i.type == pafs.FileType.Directory)


def delete(uri: str) -> None:
    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type == pafs.FileType.File:
        fs.delete_file(path)


def basename(uri: str) -> str:
    return posixpath.basename(str(uri).rstrip("/"))
