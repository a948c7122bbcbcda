"""The release step that turns the digest placeholder into the pushed image's digest."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from tests.cluster.kube import MANIFESTS, REPO, validator

DIGEST = "sha256:" + "5f" * 32


def _render(digest: str, out) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "infra" / "release.sh"), "render", digest, str(out)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_render_pins_every_image_and_passes_release_validation(tmp_path, schemas):
    assert (
        validator.main([str(p) for p in MANIFESTS] + ["--release", "--schemas", str(schemas)]) == 1
    )  # placeholders refused
    result = _render(DIGEST, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = sorted(tmp_path.glob("*.yaml"))
    assert [p.name for p in rendered] == [p.name for p in MANIFESTS]
    text = "".join(p.read_text() for p in rendered)
    assert "${LLAVA_VSD_IMAGE_DIGEST}" not in text
    assert text.count(f"ghcr.io/llava-vsd/llava-vsd@{DIGEST}") == sum(
        p.read_text().count("image:") for p in MANIFESTS
    )
    assert validator.validate_paths([str(p) for p in rendered], schemas, release=True) == []
    for path in rendered:  # rendering changes the image lines and nothing else
        assert yaml.safe_load(path.read_text()) == yaml.safe_load(
            (REPO / "cluster" / path.name).read_text().replace("${LLAVA_VSD_IMAGE_DIGEST}", DIGEST)
        )


def test_render_refuses_anything_but_a_digest(tmp_path):
    for bad in ("0.1.0-gpu", "sha256:abc", f"{DIGEST}\nimage: evil:latest", "latest"):
        result = _render(bad, tmp_path)
        assert result.returncode == 2 and "not a sha256 digest" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_build_needs_the_pinned_base(tmp_path):
    """Without infra/ray-base.digest, `build` stops before docker is ever called."""
    if (REPO / "infra" / "ray-base.digest").exists():
        digest = (REPO / "infra" / "ray-base.digest").read_text().strip()
        assert digest.startswith("sha256:") and len(digest) == 71
        return
    result = subprocess.run(
        ["bash", str(REPO / "infra" / "release.sh"), "build", "0.1.0-gpu"],
        env={**os.environ, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "run" in result.stderr and "pin-base" in result.stderr
