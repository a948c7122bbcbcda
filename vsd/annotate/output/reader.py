"""`vsd.read`: the output's current rows (or an earlier night's), the one reader for users,
tools and tests -- through the table's log, never a glob of the folder (a glob also sees files
that a later commit superseded, and parts a killed run wrote but never committed)."""

from __future__ import annotations

from vsd.annotate.output.table import read

__all__ = ["read"]
