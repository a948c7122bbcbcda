"""What each role may do in the bucket, checked in the bucket policy and in the jobs that use it.

ROLES is the single statement of least privilege (infra/README.md repeats it for people). The
bucket policy may grant a role nothing beyond it, and the roles that process other teams' input
(trainer, annotator) also get Deny statements with NotResource = their prefixes, so an IAM policy
attached to the role later cannot widen them. The jobs in cluster/ must stay inside their role:
a RayJob that wrote outside annotations/ would fail at run time; here it fails in review.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

BUCKET = "llava-vsd"
ACCOUNT = "123456789012"  # placeholder in infra/s3/bucket-policy.json; infra/s3/setup.sh fills the real one


@dataclass(frozen=True)
class Access:
    read: tuple[str, ...]
    write: tuple[str, ...]


ROLES = {
    "llava-vsd-trainer": Access(
        read=("instructions/", "runs/"), write=("runs/",)
    ),  # checkpoints live in runs/<run>/checkpoints/
    "llava-vsd-annotator": Access(read=("corpus/", "models/", "annotations/"), write=("annotations/",)),
    "ml-data-consumers": Access(read=("annotations/",), write=()),
}
GUARDED = ("llava-vsd-trainer", "llava-vsd-annotator")  # run on untrusted input: fenced by Deny too
READ = ("s3:GetObject", "s3:GetObjectVersion")
WRITE = ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:AbortMultipartUpload")
LIST = ("s3:ListBucket",)
WRITE_FLAGS = ("--output", "--out")


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


def _roles(statement: dict) -> list[str]:
    principal = statement.get("Principal")
    arns = _list(principal.get("AWS")) if isinstance(principal, dict) else [principal]
    return [str(a).rsplit("role/", 1)[-1] if ":role/" in str(a) else str(a) for a in arns]


def _inside(prefix: str | None, allowed: tuple[str, ...]) -> bool:
    return prefix is not None and prefix != "" and any(prefix.startswith(a) for a in allowed)


def _within(arn: str, allowed: tuple[str, ...], bare_ok: bool) -> bool:
    """``arn`` names only keys under ``allowed`` prefixes: ``<prefix>...*``, or, for reads, a prefix's
    own key without its slash (pyarrow stats ``corpus`` before listing ``corpus/``; S3 must answer
    404 there, not 403, or the read fails)."""
    head = f"arn:aws:s3:::{BUCKET}/"
    if not arn.startswith(head):
        return False
    key = arn[len(head) :]
    if key.endswith("*"):
        return _inside(key[:-1], allowed)
    return bare_ok and key + "/" in allowed


def _arns(prefixes: tuple[str, ...], bare: bool) -> set[str]:
    head = f"arn:aws:s3:::{BUCKET}/"
    return {head + p + "*" for p in prefixes} | ({head + p.rstrip("/") for p in prefixes} if bare else set())


def _allow_problems(sid: str, statement: dict) -> list[str]:
    out = []
    if "NotAction" in statement or "NotResource" in statement or "NotPrincipal" in statement:
        return [f"{sid}: an Allow with NotAction/NotResource/NotPrincipal grants everything it does not name"]
    for role in _roles(statement):
        if role not in ROLES:
            out.append(
                f"{sid}: allows {role!r}, which has no entry in the role table (kubecheck/s3access.py ROLES)"
            )
            continue
        access = ROLES[role]
        for action in _list(statement.get("Action")):
            resources = _list(statement.get("Resource"))
            if action in READ or action in WRITE:
                allowed = access.read if action in READ else access.write
                for arn in resources:
                    if not _within(arn, allowed, bare_ok=action in READ):
                        out.append(
                            f"{sid}: {role} may {action} {arn}, outside its prefixes {', '.join(allowed) or '(none)'}"
                        )
            elif action in LIST:
                # Bucket-wide listing (key names only) is allowed: S3 answers a missing key with 404
                # only to a principal allowed s3:ListBucket (otherwise 403, which pyarrow raises), and
                # completion markers and resume tell "missing" from "forbidden" by that 404. A grant
                # narrowed by an s3:prefix condition is not relied on for it.
                if resources != [f"arn:aws:s3:::{BUCKET}"]:
                    out.append(f"{sid}: s3:ListBucket applies to the bucket ARN only, not {resources}")
                prefixes = _list(
                    ((statement.get("Condition") or {}).get("StringLike") or {}).get("s3:prefix", [])
                )
                for p in prefixes:
                    if not _inside(str(p).rstrip("*"), access.read):
                        out.append(
                            f"{sid}: {role} may list {p}, outside its prefixes {', '.join(access.read)}"
                        )
            else:
                out.append(
                    f"{sid}: {role} is allowed {action!r}; grant only {', '.join(READ + WRITE + LIST)}"
                )
    return out


def _fenced(statements: list[dict], role: str, actions: tuple[str, ...], allowed: tuple[str, ...]) -> bool:
    """A Deny for this role covering ``actions`` everywhere except ``allowed`` prefixes."""
    fence = _arns(allowed, bare=actions == READ)
    for s in statements:
        if s.get("Effect") == "Deny" and role in _roles(s) and set(actions) <= set(_list(s.get("Action"))):
            if set(_list(s.get("NotResource", []))) <= fence and s.get("NotResource"):
                return True
    return False


def check_bucket_policy(policy: dict, where: str = "bucket policy") -> list[str]:
    statements = policy.get("Statement") or []
    out = []
    if not any(
        s.get("Effect") == "Deny"
        and (s.get("Condition") or {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        for s in statements
    ):
        out.append(f"{where}: no Deny for aws:SecureTransport false; plain HTTP must be refused")
    for i, s in enumerate(statements):
        sid = f"{where} {s.get('Sid', f'Statement[{i}]')}"
        if s.get("Effect") == "Allow":
            if s.get("Principal") == "*" or "*" in _list(
                (s.get("Principal") or {}).get("AWS", []) if isinstance(s.get("Principal"), dict) else []
            ):
                out.append(f"{sid}: allows every principal")
                continue
            out += _allow_problems(sid, s)
    for role in GUARDED:
        access = ROLES[role]
        if not _fenced(statements, role, WRITE, access.write):
            out.append(
                f"{where}: no Deny fences {role}'s writes to {', '.join(access.write)}: an IAM policy on the role "
                "could widen them (Deny with NotResource)"
            )
        if not _fenced(statements, role, READ, access.read):
            out.append(
                f"{where}: no Deny fences {role}'s reads to {', '.join(access.read)}: an IAM policy on the role "
                "could widen them (Deny with NotResource)"
            )
    return out


def job_uris(words: list[str]) -> list[tuple[str, str]]:
    """(mode, s3 URI) for each s3:// argument of a job command line; mode is 'write' for outputs."""
    out, previous = [], ""
    for word in words:
        flag, eq, value = word.partition("=")
        if word.startswith("s3://"):
            out.append(("write" if previous in WRITE_FLAGS else "read", word))
        elif eq and value.startswith("s3://"):
            out.append(("write" if flag in WRITE_FLAGS else "read", value))
        previous = word
    return out


def check_job(command: str | list[str], role: str | None, where: str) -> list[str]:
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    uris = job_uris(words)
    if not uris:
        return []
    if role not in ROLES:
        return [
            f"{where}: the job touches S3 but runs as {role or 'no service account'}, which has no role in the table"
        ]
    out, access = [], ROLES[role]
    for mode, uri in uris:
        bucket, _, key = uri[len("s3://") :].partition("/")
        allowed = access.write if mode == "write" else access.read
        if bucket != BUCKET or not _inside(key if key.endswith("/") else key + "/", allowed):
            out.append(
                f"{where}: {mode}s {uri}, outside what {role} may {mode} (s3://{BUCKET}/{{{','.join(allowed)}}})"
            )
    return out
