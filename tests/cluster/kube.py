"""Shared by the manifest tests: the validator (cluster/validate.py is a script, not a package
module) and the shipped manifests, loaded fresh for each test so mutations never leak."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((REPO / "cluster").glob("*.yaml"))
PODMONITOR = REPO / "infra" / "monitoring" / "podmonitor.yaml"


def _load_validator():
    spec = importlib.util.spec_from_file_location("cluster_validate", REPO / "cluster" / "validate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


validator = _load_validator()


def doc(name: str) -> dict:
    """One manifest of cluster/ (or a path relative to the repo), parsed anew."""
    path = REPO / "cluster" / name if "/" not in name else REPO / name
    return yaml.safe_load(path.read_text())


def deployable_set() -> dict[str, dict]:
    """cluster/*.yaml plus the PodMonitor, by file name, as `kubectl apply` would get them."""
    docs = {p.name: yaml.safe_load(p.read_text()) for p in MANIFESTS}
    docs[PODMONITOR.name] = yaml.safe_load(PODMONITOR.read_text())
    return docs
