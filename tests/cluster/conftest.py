from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def schemas(shared_dir) -> Path:
    """The KubeRay v1.7 CRDs the manifests are validated against."""
    return shared_dir / "schemas" / "kuberay"
