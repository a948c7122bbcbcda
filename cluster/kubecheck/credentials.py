"""How credentials reach a container: as mounted files, never as environment variables.

Environment variables are readable by every process of the container (`/proc/<pid>/environ`, a
crash dump, a debug endpoint) and were the leak in issue 15's review. S3 access is IRSA (a
projected token for sts.amazonaws.com plus AWS_ROLE_ARN) or, for S3 stores without web identity,
an AWS shared-credentials file mounted from a Secret (AWS_SHARED_CREDENTIALS_FILE). Both are
accepted; the manifests use IRSA.
"""

from __future__ import annotations

from .pod_security import mounted_volume
from .workloads import Pod

STATIC_AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "ACCESS_KEY")
FILE_SUFFIXES = ("_FILE", "_PATH")
IRSA_AUDIENCE = "sts.amazonaws.com"
S3_ENV = ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_SHARED_CREDENTIALS_FILE", *STATIC_AWS_KEYS)


def _env(container: dict) -> dict[str, dict]:
    return {str(e.get("name")): e for e in container.get("env") or []}


def _points_into(container: dict, volumes: dict, path: str, kind: str) -> dict | None:
    """The volume holding ``path`` if it is mounted read-only and of ``kind`` (projected, secret)."""
    found = mounted_volume(container, volumes, path)
    if found is None:
        return None
    mount, volume = found
    return volume if mount.get("readOnly") and kind in volume else None


def _irsa(path: str, container: dict, env: dict, volumes: dict) -> list[str]:
    token_file = str(env["AWS_WEB_IDENTITY_TOKEN_FILE"].get("value", ""))
    volume = _points_into(container, volumes, token_file, "projected")
    audiences = [
        (s.get("serviceAccountToken") or {}).get("audience")
        for s in ((volume or {}).get("projected") or {}).get("sources") or []
    ]
    out = []
    if IRSA_AUDIENCE not in audiences:
        out.append(
            f"{path}: AWS_WEB_IDENTITY_TOKEN_FILE must point into a read-only projected serviceAccountToken "
            f"volume with audience {IRSA_AUDIENCE}"
        )
    if "AWS_ROLE_ARN" not in env:
        out.append(f"{path}: AWS_WEB_IDENTITY_TOKEN_FILE without AWS_ROLE_ARN: no role to assume")
    return out


def credentials_as_files(pod: Pod) -> list[str]:
    """No Secret in env (static AWS keys above all); IRSA or a mounted credentials file, consistent;
    no S3 credentials for submit pods."""
    out, volumes = [], pod.volumes()
    for path, container in pod.containers():
        env = _env(container)
        for key in STATIC_AWS_KEYS:
            if key in env:
                out.append(
                    f"{path}.env: {key}: static AWS keys as environment variables; use IRSA (a projected "
                    "sts.amazonaws.com token) or a credentials file mounted from a Secret"
                )
        for i, source in enumerate(container.get("envFrom") or []):
            if "secretRef" in source:
                out.append(f"{path}.envFrom[{i}]: a whole Secret as environment variables; mount it as files")
        for name, entry in env.items():
            if name not in STATIC_AWS_KEYS and "secretKeyRef" in (entry.get("valueFrom") or {}):
                out.append(
                    f"{path}.env: {name}: a Secret as an environment variable; mount it and pass its path "
                    f"({name}_FILE / {name}_PATH, e.g. RAY_AUTH_TOKEN_PATH, HF_TOKEN_PATH)"
                )
        if "AWS_WEB_IDENTITY_TOKEN_FILE" in env:
            out += _irsa(path, container, env, volumes)
        if "AWS_SHARED_CREDENTIALS_FILE" in env:
            target = str(env["AWS_SHARED_CREDENTIALS_FILE"].get("value", ""))
            if _points_into(container, volumes, target, "secret") is None:
                out.append(f"{path}: AWS_SHARED_CREDENTIALS_FILE must point into a read-only Secret volume")
        if pod.role == "submitter" and any(k in env for k in S3_ENV):
            out.append(
                f"{path}: a `ray job submit` pod needs no S3 credentials; the Ray cluster's pods have them"
            )
    return out


def inline_secrets(doc) -> list[str]:
    """Env vars that look like credentials must come from a Secret, never a literal value; a literal is
    allowed only for a *_FILE / *_PATH variable naming a file inside one of the container's mounts."""
    found = []

    def check_container(node: dict, path: str) -> None:
        for e in node.get("env") or []:
            if not isinstance(e, dict):
                continue
            name = str(e.get("name", ""))
            if "value" not in e or not any(w in name.upper() for w in SECRET_WORDS):
                continue
            value, is_file_var = str(e.get("value")), name.upper().endswith(FILE_SUFFIXES)
            mounts = [
                str(m.get("mountPath", "")) for m in node.get("volumeMounts") or [] if isinstance(m, dict)
            ]
            if is_file_var and any(m and value.startswith(m.rstrip("/") + "/") for m in mounts):
                continue  # a path to a mounted file, not a secret
            found.append(
                f"{path}: {name} has an inline value; use valueFrom.secretKeyRef"
                + (" or point it at a file in a mounted volume" if is_file_var else "")
            )

    def walk(node, path):
        if isinstance(node, dict):
            if isinstance(node.get("env"), list):
                check_container(node, path)
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(doc, "")
    return found
