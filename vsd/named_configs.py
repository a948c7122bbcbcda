"""``--config tiny-cpu``: the shipped job configs by name, from any folder, installed or checked out.

``jobs/configs/<job>-<name>.yaml`` is where the configs are written and reviewed, and what
``ray job submit --working-dir .`` and the cluster manifests name by path. A path only works from
the repository root, though, and a wheel (the container image: ``pip install .``) has no
``jobs/`` at all. So the package carries them as package data in ``vsd/assets/configs/``, as
symlinks to ``jobs/configs/`` in the repository: one source of truth (nothing to keep in sync),
and building the wheel copies the files the links point at (``tests/test_named_configs.py``
checks both). A ``--config`` value that is an existing file, has a folder in it or ends in
``.yaml``/``.yml`` is a path, as before; anything else is a name.
"""

from __future__ import annotations

import os
from pathlib import Path

from vsd.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "assets" / "configs"
SUFFIXES = (".yaml", ".yml")


def known_names(job: str) -> list[str]:
    """The names ``--config`` takes for ``job`` (``annotate`` or ``train``), sorted."""
    prefix = f"{job}-"
    return sorted(
        p.name[len(prefix) : -len(".yaml")]
        for p in CONFIG_DIR.glob(f"{prefix}*.yaml")
        if p.is_file()  # a dangling link (jobs/ missing from a broken checkout) is not offered
    )


def is_path(value: str) -> bool:
    return (
        "/" in value or os.sep in value or value.endswith(SUFFIXES) or "://" in value or os.path.exists(value)
    )


def resolve_config(value: str | None, job: str) -> str | None:
    """The file ``--config VALUE`` means for ``job``: VALUE itself when it is a path, else the
    shipped ``<job>-VALUE.yaml`` (``VALUE`` may also carry the ``<job>-`` prefix). An unknown name
    is one line listing the known ones."""
    if not value or is_path(value):
        return value
    name = value[len(job) + 1 :] if value.startswith(f"{job}-") else value
    found = CONFIG_DIR / f"{job}-{name}.yaml"
    if found.is_file():
        return str(found)
    names = known_names(job)
    raise ConfigError(
        f"config: {value!r} is neither a file nor a known {job} config name "
        f"(known: {', '.join(names) if names else 'none shipped'}; or give a path to a YAML file)"
    )
