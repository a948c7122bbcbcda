"""Images by digest: a tag can be moved to other bytes after review, a digest cannot.

The cluster image is built from infra/Dockerfile, so its digest exists only after a release. The
committed manifests therefore name it with one documented placeholder,
``ghcr.io/llava-vsd/llava-vsd@${LLAVA_VSD_IMAGE_DIGEST}``, which ``infra/release.sh`` fills with
the pushed image's digest; an unrendered manifest fails to pull (an invalid reference) rather than
running a tag. ``--release`` refuses the placeholder too. The Dockerfile's base is pinned the same
way (``FROM <repo>:<tag>@${RAY_BASE_DIGEST}``, the digest kept in infra/ray-base.digest).
"""

from __future__ import annotations

import re

OWN_IMAGE = "ghcr.io/llava-vsd/llava-vsd"
PLACEHOLDER = "${LLAVA_VSD_IMAGE_DIGEST}"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
PINNED = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


def check_image(ref, where: str, release: bool) -> list[str]:
    ref = str(ref or "")
    if ref == f"{OWN_IMAGE}@{PLACEHOLDER}":
        if release:
            return [
                f"{where}: image digest placeholder {PLACEHOLDER} not filled; render the manifests with "
                "`bash infra/release.sh render sha256:<digest>`"
            ]
        return []
    if not PINNED.match(ref):
        return [
            f"{where}: image {ref!r} is not pinned by digest (a tag can be moved); use <repo>@sha256:<digest>"
            + (f" or {OWN_IMAGE}@{PLACEHOLDER}" if ref.startswith(OWN_IMAGE) else "")
        ]
    return []


def pod_images(pod, release: bool) -> list[str]:
    out = []
    for path, container in pod.containers(with_autoscaler=False):
        out += check_image(container.get("image"), f"{path}.image", release)
    if pod.autoscaler is not None and "image" in pod.autoscaler:  # else KubeRay uses the head's image
        out += check_image(pod.autoscaler["image"], f"{pod.autoscaler_where}.image", release)
    return out


def check_dockerfile(text: str, where: str = "Dockerfile") -> list[str]:
    """Every FROM names its base by digest, literally or through an ARG with no tag-like default."""
    out, args = [], {}
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if len(words) >= 2 and words[0].upper() == "ARG":
            name, _, default = words[1].partition("=")
            args[name] = default
        if not words or words[0].upper() != "FROM":
            continue
        image = next((w for w in words[1:] if not w.startswith("--")), "")
        if image.lower() == "scratch" or image in _stage_names(text, n):
            continue
        repo, at, digest = image.partition("@")
        var = re.fullmatch(r"\$\{?(\w+)\}?", digest)
        if at and DIGEST.match(digest):
            continue
        if (
            at
            and var
            and var.group(1) in args
            and (not args[var.group(1)] or DIGEST.match(args[var.group(1)]))
        ):
            continue
        out.append(
            f"{where} line {n}: base image {image!r} is not pinned by digest; use "
            f"{repo}@sha256:<digest> or {repo}@${{RAY_BASE_DIGEST}} with `ARG RAY_BASE_DIGEST`"
        )
    return out


def _stage_names(text: str, before_line: int) -> set[str]:
    """Names of earlier build stages (`FROM x AS name`): a later `FROM name` reuses one, no pull."""
    names = set()
    for line in text.splitlines()[: before_line - 1]:
        words = line.split()
        if len(words) >= 4 and words[0].upper() == "FROM" and words[-2].upper() == "AS":
            names.add(words[-1])
    return names
