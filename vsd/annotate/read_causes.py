"""Why a read failed, by cause: the store failing (transient: defer, the next run tries again) or
the name itself (permanent: an error row now, with its reason).

Why by cause and not "every OSError is transient": a 5 kB path (ENAMETOOLONG), a looping link
(ELOOP) or an S3 key Arrow refuses (``photos//x.png``) fails the same way every night, so deferring
it kept its shard open forever and re-read it each run. Only failures of the storage -- 5xx,
throttling, timeouts, dropped connections, an I/O error -- may heal by themselves.

Also here: S3 keys that the Arrow/curl client cannot address exactly. curl removes ``.``/``..``
segments from a URL path (so ``photos/sub/../x.png`` read ``photos/x.png``, another object) and
Arrow refuses an empty segment (``a//b``); on S3 these are ordinary keys, so they are read with
boto3, which sends the key as written.
"""

from __future__ import annotations

import errno
import re
from functools import lru_cache

# Local errors that come from the storage (a flaky NFS or FUSE mount, a full process table), not from the name.
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EIO",
        "ESTALE",
        "ETIMEDOUT",
        "EAGAIN",
        "EINTR",
        "EBUSY",
        "ENOMEM",
        "ENFILE",
        "EMFILE",
        "ENOBUFS",
        "ECONNRESET",
        "ECONNABORTED",
        "ECONNREFUSED",
        "ENOTCONN",
        "ENETDOWN",
        "ENETUNREACH",
        "ENETRESET",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "ENOLINK",
        "ECOMM",
        "EREMOTEIO",
    )
    if hasattr(errno, name)
)
# errno -> (reason, detail) for what the name or the entry itself makes impossible, every night alike.
PERMANENT_ERRNOS = {
    errno.ENOENT: ("missing_file", "no such file"),
    errno.ENOTDIR: ("missing_file", "a folder in the path is a file"),
    errno.EISDIR: ("not_a_file", "a directory"),
    errno.ENXIO: ("not_a_file", "a socket or a device without a reader"),
    errno.ENODEV: ("not_a_file", "a device"),
    errno.ELOOP: ("link_loop", "a symbolic link loop (or a chain of links too long)"),
    errno.ENAMETOOLONG: ("bad_path", "the path or a name in it is too long for the file system"),
    errno.EINVAL: ("bad_path", "the file system refuses this name"),
    errno.EILSEQ: ("bad_path", "the file system cannot encode this name"),
    errno.EACCES: ("read_error", "permission denied"),
    errno.EPERM: ("read_error", "permission denied"),
}


def local_cause(exc: OSError) -> tuple[str, str, bool]:
    """(reason, detail, transient) for a failed local open/read/stat."""
    code = exc.errno or 0
    if code in PERMANENT_ERRNOS:
        return (*PERMANENT_ERRNOS[code], False)
    name = errno.errorcode.get(code, type(exc).__name__)
    if code in TRANSIENT_ERRNOS:
        return "read_error", name, True
    return "read_error", f"{name} (not a storage fault: not retried)", False


_HTTP = re.compile(r"HTTP (?:status|response code:?) (\d{3})")
_DENIED = ("ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH", "EXPIRED_TOKEN")


def s3_cause(exc: Exception) -> tuple[str, str, bool]:
    """(reason, detail, transient) for a failed S3 read through Arrow. A 4xx answer (but 408 and
    429) is about the request -- the key, the permission -- and is final; anything else (5xx,
    throttling, timeouts, curl's connection errors, an answer not understood) is the store's."""
    if isinstance(exc, ValueError):  # ArrowInvalid: a key Arrow cannot even put in a request
        return "bad_key", f"the S3 client refuses this key ({' '.join(str(exc).split())[:120]})", False
    if isinstance(exc, FileNotFoundError):
        return "missing_file", "no such object", False
    message = str(exc)
    if "NO_SUCH_BUCKET" in message:
        return "missing_file", "no such bucket", False
    if "NO_SUCH_KEY" in message or "RESOURCE_NOT_FOUND" in message:
        return "missing_file", "no such object", False
    if any(code in message for code in _DENIED):
        return "read_error", "access denied", False
    match = _HTTP.search(message)
    if match and match[1].startswith("4") and match[1] not in ("408", "429"):
        reason = "read_error" if match[1] in ("401", "403") else "bad_key"
        return reason, f"S3 answered HTTP {match[1]}", False
    code = re.search(r"AWS Error (\w+)", message)
    return "read_error", (code[1] if code else type(exc).__name__), True


@lru_cache(maxsize=4)
def _client(endpoint: str | None, region: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        config=Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=10, read_timeout=60),
    )


def read_exact_key(bucket: str, key: str, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes of the object named exactly ``key``; raises `ExactKeyError`."""
    import botocore.exceptions as bex

    from vsd import storage

    storage.skip_metadata_lookup()
    client = _client(storage.s3_endpoint(), storage.s3_region())
    try:
        body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{max_bytes}")["Body"]
        try:
            return body.read(max_bytes + 1)
        finally:
            body.close()
    except bex.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in ("NoSuchKey", "NoSuchBucket", "404") or status == 404:
            raise ExactKeyError("missing_file", "no such object", False) from None
        if code == "InvalidRange":  # an empty object: no byte 0 to start from
            return b""
        if 400 <= status < 500 and status not in (408, 429):
            raise ExactKeyError("read_error", f"S3 answered HTTP {status} {code}", False) from None
        raise ExactKeyError("read_error", code or f"HTTP {status}", True) from None
    except (bex.BotoCoreError, OSError) as exc:  # connection, timeout, a dropped read
        raise ExactKeyError("read_error", type(exc).__name__, True) from None


class ExactKeyError(Exception):
    def __init__(self, reason: str, detail: str, transient: bool):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.transient = reason, detail, transient
