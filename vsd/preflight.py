"""Preflight: every URI a run will touch, checked once, in seconds, before Ray starts.

Why before Ray: a wrong path, an output that is a file or an unreachable S3 endpoint otherwise
surfaces inside a Ray worker -- after the cluster started and the model loaded -- as a long
traceback; and the run's own S3 client retries patiently (right for a night's run, 40 s for a
typo). Each check here uses `storage.probe_filesystem` (bounded timeouts, two attempts), stops
at the first failure and turns it into one `VSDError` line, ``<field>: <uri>: <what is wrong>``,
which for S3 also names the endpoint and the credentials in use or the variables to set.

What is checked (`annotate_targets`): the input is the kind its format reads (a corpus, a folder
or prefix, a manifest or VSD JSON file, the image folder); the output is writable (local: not a
file, its nearest existing folder writable; S3: a probe object written and deleted under
``__vsd/``, where dataset readers never look); models and adapters given as local paths or
``s3://`` prefixes are folders that exist, local ones given as absolute paths (Ray actors do not
run in this folder); hub ids, when offline (``HF_HUB_OFFLINE=1``), are in the local cache
(`check_models`). Every model the run loads is checked: generator, adapter, refine LLM, propose
detector and depth model. ``tiny:`` names are built by their loaders. Last, each backend the run
uses adds its own checks (``vsd.backends.preflight``).
"""

from __future__ import annotations

import os
import posixpath
import re
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow.fs as pafs

from vsd import backends, storage
from vsd.errors import VSDError

CREDENTIAL_HELP = (
    "set AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or IRSA's "
    "AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE"
)
_UNREACHABLE = ("NETWORK_CONNECTION", "REQUEST_TIMEOUT", "SLOW_DOWN", "SERVICE_UNAVAILABLE", "curlCode")
_DENIED = (
    "ACCESS_DENIED",
    "INVALID_ACCESS_KEY_ID",
    "SIGNATURE_DOES_NOT_MATCH",
    "EXPIRED_TOKEN",
    "INVALID_CLIENT_TOKEN_ID",
    "UNRECOGNIZED_CLIENT",
    "MISSING_AUTHENTICATION_TOKEN",
    "HTTP response code: 403",
)
_AWS_ERROR = re.compile(r"AWS Error (\w+) during (\w+) operation: ([^;(]*)")


@dataclass(frozen=True)
class Target:
    """One URI a run touches. ``want``: ``any`` (a folder, prefix or single file), ``file``,
    ``dir``, ``corpus`` (a folder with ``_corpus.json``) or ``output`` (a writable root)."""

    field: str
    uri: str
    want: str
    hint: str = ""  # what the field should name, added when it names something else


class PreflightError(VSDError):
    """A URI of the run is missing, of the wrong kind, unreachable or not permitted."""


def is_location(name: str | None) -> bool:
    """Whether a model/adapter name is a place to check: ``s3://``, ``file://`` or a local path.
    A name with exactly one ``/`` that is not on disk is a hub id (``org/name``), as the loader reads it."""
    if not name or name.startswith("tiny:"):
        return False
    if storage.is_s3(name) or name.startswith("file://"):
        return True
    return (
        os.path.exists(os.path.expanduser(name)) or name.startswith((".", "/", "~")) or name.count("/") != 1
    )


def annotate_targets(cfg) -> list[Target]:
    """What `vsd annotate` with ``cfg`` reads and writes, in the order a user fixes them."""
    from vsd.corpus.sources import detect_format

    src = cfg.input
    kind = "corpus" if src.format == "corpus" else detect_format(src.uri, src.format)
    want, hint = {
        "corpus": ("corpus", "a corpus made by `vsd corpus sync`, or set input.format=auto"),
        "folder": (
            "any",
            "a folder or s3:// prefix of images, a corpus, a .parquet/.jsonl/.csv manifest or a VSD .json",
        ),
        "manifest": ("file", "a .parquet/.jsonl/.csv manifest file"),
        "vsd_json": ("file", "a VSD .json file"),
    }[kind]
    targets = [Target("input.uri", src.uri, want, hint)]
    if src.image_dir:
        targets.append(Target("input.image_dir", src.image_dir, "dir", "the folder of the images"))
    if kind == "vsd_json" and src.vsd2:
        targets.append(Target("input.vsd2", src.vsd2, "file", "the VSDv2 .json file"))
    targets.append(Target("output", cfg.output, "output"))
    hints = {"engine.adapter": "an adapter, checkpoint or training-run folder (local or s3://)"}
    targets += [
        Target(
            f,
            name,
            "dir",
            hints.get(f, "a checkpoint folder or s3:// prefix, a hub id org/name or tiny:llava"),
        )
        for f, name in run_models(cfg)
        if is_location(name)
    ]
    return targets


def run_models(cfg) -> list[tuple[str, str]]:
    """(field, name) of every model the run will load, each in the actor that loads it: the
    generator, its adapter, the refine LLM, the propose detector and depth model (when on)."""
    models = [("engine.model", cfg.engine.model), ("engine.adapter", cfg.engine.adapter)]
    if cfg.stages.refine.mode in backends.refiners():
        models.append(("stages.refine.model", cfg.stages.refine.model))
    propose = cfg.stages.propose
    if propose.enabled:
        models.append(("stages.propose.model", propose.model))
        if propose.depth:
            models.append(("stages.propose.depth_model", propose.depth_model))
    return [(f, name) for f, name in models if name]


def check_models(cfg) -> None:
    """What would otherwise fail inside a Ray actor, as 548 lines ending "please report it": a
    relative local path (actors do not run in this folder; `vsd.annotate.paths.make_absolute`
    makes the CLI's absolute first, so this guards configs built in code) and, offline
    (``HF_HUB_OFFLINE=1``), a hub id that is not in the local cache. Missing folders are
    `annotate_targets`' ``dir`` checks."""
    for field, name in run_models(cfg):
        if name.startswith("tiny:") or storage.is_s3(name) or name.startswith("file://"):
            continue
        if is_location(name):
            if not os.path.isabs(os.path.expanduser(name)):
                raise PreflightError(
                    f"{field}: {name}: a relative path; Ray actors do not run in this folder "
                    f"(use the absolute path {os.path.abspath(os.path.expanduser(name))})"
                )
        elif hub_offline() and not in_hub_cache(name):
            raise PreflightError(
                f"{field}: {name}: a hub id, but HF_HUB_OFFLINE=1 and it is not in the local cache "
                f"({hub_cache_dir()}); download it where there is a network (huggingface-cli download "
                f"{name}) or give a local folder or s3:// prefix"
            )


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_cache_dir() -> str:
    """The hub cache the loaders in this process and its Ray workers (same environment) read."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE


def in_hub_cache(repo_id: str) -> bool:
    """Whether a snapshot of ``repo_id`` with its ``config.json`` is in the local hub cache."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json", cache_dir=hub_cache_dir()), str)
    except Exception:  # noqa: BLE001 - a malformed id is "not cached"; the line names it
        return False


def check_annotate(cfg) -> float:
    """Raise `PreflightError` for the first URI or model of the run that would fail; returns the
    seconds taken."""
    started = time.monotonic()
    check(annotate_targets(cfg))
    check_models(cfg)
    backends.preflight(cfg)  # each backend's own checks (sglang: the export's layout)
    return time.monotonic() - started


def check(targets: list[Target]) -> float:
    started = time.monotonic()
    # Before the first S3 client, and before Ray copies this environment to its workers.
    if not storage.skip_metadata_lookup() and any(storage.is_s3(t.uri) for t in targets):
        skip_unreachable_metadata()
    for target in targets:
        fs = storage.probe_filesystem(target.uri)
        path = storage.resolve(target.uri)[1]
        if storage.is_s3(target.uri):
            try:
                _check_s3(target, fs, path)
            except OSError as exc:
                raise s3_error(target, exc) from None
        else:
            _check_local(target, path)
    return time.monotonic() - started


def skip_unreachable_metadata(timeout_s: float = 0.5) -> bool:
    """With nothing configured the SDK's last resort is the instance metadata service; off an
    instance (a laptop, another cloud) every lookup waits on a dead address, ~30 s in all. One TCP
    connect tells: if nothing answers there, the lookup is switched off for this process and the
    workers it starts (unless the user chose with AWS_EC2_METADATA_DISABLED). Returns whether it did."""
    if storage.IMDS_SWITCH in os.environ:
        return False
    url = urlparse(os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or "http://169.254.169.254")
    try:
        socket.create_connection((url.hostname, url.port or 80), timeout=timeout_s).close()
        return False
    except OSError:
        os.environ[storage.IMDS_SWITCH] = "true"
        return True


def _fail(target: Target, what: str, hint: bool = True) -> PreflightError:
    extra = f" (expected {target.hint})" if hint and target.hint else ""
    return PreflightError(f"{target.field}: {target.uri}: {what}{extra}")


def _check_kind(target: Target, is_dir: bool, has_corpus_file) -> None:
    """The folder-or-file rules shared by local paths and S3 (``has_corpus_file`` is asked lazily)."""
    if target.want == "file" and is_dir:
        raise _fail(target, "is a folder")
    if target.want in ("dir", "corpus") and not is_dir:
        raise _fail(target, "is a file, not a folder")
    if target.want == "corpus" and not has_corpus_file():
        raise _fail(target, "not a corpus (no _corpus.json)")


def _check_local(target: Target, path: str) -> None:
    from vsd.corpus.shards import META_FILE

    if target.want == "output":
        _check_local_output(target, path)
        return
    if not os.path.exists(path):
        raise _fail(target, "not found")
    is_dir = os.path.isdir(path)
    _check_kind(target, is_dir, lambda: os.path.isfile(os.path.join(path, META_FILE)))
    if not os.access(path, os.R_OK | (os.X_OK if is_dir else 0)):
        raise _fail(target, "not readable by this user", hint=False)


def _check_local_output(target: Target, path: str) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise _fail(
            target,
            "is a file; the output root is a folder (new or existing) that will hold run_date=*/ partitions",
            hint=False,
        )
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise _fail(target, f"cannot be created: {existing} is a file", hint=False)
    try:  # a real write: permission bits say nothing for root, a read-only mount or /proc
        fd, probe = tempfile.mkstemp(prefix=".vsd-preflight-", dir=existing)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise _fail(
            target, f"not writable: cannot create a file in {existing} ({exc.strerror})", hint=False
        ) from None


def _check_s3(target: Target, fs: pafs.FileSystem, path: str) -> None:
    from vsd.annotate.index import VSD_DIR
    from vsd.corpus.shards import META_FILE

    info = fs.get_file_info(path)
    if target.want == "output":
        if info.type == pafs.FileType.File:
            raise _fail(target, "is an object; the output root is a prefix", hint=False)
        probe = posixpath.join(path, VSD_DIR, f"preflight-{uuid.uuid4().hex[:12]}")
        with fs.open_output_stream(probe) as f:  # a write proves the bucket, the endpoint and the permission
            f.write(b"")
        fs.delete_file(probe)
        return
    if info.type == pafs.FileType.NotFound:
        bucket = path.split("/", 1)[0]
        if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise _fail(target, f"bucket {bucket!r} does not exist; {s3_context()}", hint=False)
        raise _fail(target, f"nothing at or under this prefix; {s3_context()}")
    _check_kind(
        target,
        info.type == pafs.FileType.Directory,
        lambda: fs.get_file_info(posixpath.join(path, META_FILE)).type == pafs.FileType.File,
    )


def s3_context() -> str:
    """``endpoint …, credentials …``: what a user checks first when S3 fails."""
    var = "AWS_ENDPOINT_URL_S3" if os.environ.get("AWS_ENDPOINT_URL_S3") else "AWS_ENDPOINT_URL"
    endpoint = storage.s3_endpoint()
    where = (
        f"endpoint {endpoint} (from {var})"
        if endpoint
        else f"endpoint: AWS S3 in {storage.s3_region()} (set AWS_ENDPOINT_URL for MinIO or another store)"
    )
    source = storage.credential_source()
    if source:
        return f"{where}, credentials from {source}"
    imds = "off" if os.environ.get(storage.IMDS_SWITCH, "").lower() == "true" else "on"
    return f"{where}, no credentials in the environment (instance metadata lookup {imds}): {CREDENTIAL_HELP}"


def s3_error(target: Target, exc: OSError) -> PreflightError:
    """One line for an S3 failure: what went wrong, where, and what to set."""
    message = str(exc)
    match = _AWS_ERROR.search(message)
    detail = (f"{match[1]} during {match[2]}: {match[3].strip()}" if match else message.splitlines()[0])[:200]
    bucket = target.uri[len("s3://") :].split("/", 1)[0]
    advice = ""
    if "NO_SUCH_BUCKET" in message:
        what = f"bucket {bucket!r} does not exist"
    elif any(code in message for code in _UNREACHABLE):
        what = f"cannot reach S3 ({detail})"
    elif any(code in message for code in _DENIED):
        what = f"access denied ({detail})"
        verb = "write under" if target.want == "output" else "read"
        advice = f"; use an identity allowed to {verb} it"
        if storage.credential_source():  # otherwise the context already says what to set
            advice += f" ({CREDENTIAL_HELP})"
    else:
        what = detail
    return _fail(target, f"{what}; {s3_context()}{advice}", hint=False)
