"""cluster/validate.py carries what it needs: run from a clone outside this workspace, from
another folder, it validates the deployable set against its vendored CRDs."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys

from tests.fixtures.infra import REPO

VENDORED = REPO / "cluster" / "schemas" / "kuberay-v1.7"


def test_a_clone_elsewhere_validates_from_any_folder(tmp_path):
    clone = tmp_path / "elsewhere" / "llava-vsd"  # no ../shared next to it
    shutil.copytree(REPO / "cluster", clone / "cluster", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "infra", clone / "infra", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "cwd").mkdir()
    proc = subprocess.run(
        [sys.executable, str(clone / "cluster" / "validate.py")],
        cwd=tmp_path / "cwd",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.strip().endswith(" problems") and ", 0 problems" in proc.stdout
    gone = subprocess.run(
        [sys.executable, str(clone / "cluster" / "validate.py"), "--schemas", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert gone.returncode == 2 and "Traceback" not in gone.stderr
    assert gone.stderr.startswith("validate.py: error: --schemas") and len(gone.stderr.splitlines()) == 1


def test_the_vendored_crds_are_the_published_ones_named_in_the_readme(shared_dir):
    readme = (VENDORED / "README.md").read_text()
    for path in sorted(VENDORED.glob("*.yaml")):
        assert f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}" in readme, path.name
        upstream = shared_dir / "schemas" / "kuberay" / path.name
        if upstream.exists():  # the workspace's copy, where there is one
            assert upstream.read_bytes() == path.read_bytes(), path.name
