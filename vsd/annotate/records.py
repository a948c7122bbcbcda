"""Small JSON records that pile up one a night, kept to a bounded number of objects.

Every run leaves a few records (its start, its end, its totals, a completion marker per shard,
its partition's): one object each is what makes them safe to write (whole, never edited), and a
year of nights would make that ~2,000 objects to list and GET. So a folder of records is an LSM
of two levels: each record is first a loose ``<name>.json``; once more than ``max_loose`` are loose,
`pack` folds them (and the previous pack) into one ``_packed.jsonl`` and deletes the loose ones.
The pack is written whole (a temp file + rename, or one PUT) before anything is deleted, so a crash
in between leaves a record twice, never zero times; a loose record wins over a packed one of the
same name. Only one writer packs at a time (the output's lease).
"""

from __future__ import annotations

import json
import posixpath

from vsd import storage

PACK = "_packed.jsonl"
MAX_LOOSE = 4


class Records:
    """The records under ``folder`` (local or s3://), by name."""

    def __init__(self, folder: str, max_loose: int = MAX_LOOSE):
        self.folder, self.max_loose = folder.rstrip("/"), max_loose

    def _uri(self, name: str) -> str:
        return storage.join(self.folder, f"{name}.json")

    def put(self, name: str, record: dict) -> None:
        storage.write_text(self._uri(name), json.dumps(record, indent=2, default=str) + "\n")

    def get(self, name: str) -> dict | None:
        try:
            return json.loads(storage.read_text(self._uri(name)))
        except FileNotFoundError:
            return self._packed().get(name)

    def has(self, name: str) -> bool:
        return storage.exists(self._uri(name)) or name in self._packed()

    def _loose(self) -> dict[str, str]:
        """{name: uri} of the loose records (one listing)."""
        return {
            posixpath.basename(u)[: -len(".json")]: u
            for u in storage.list_files(self.folder, recursive=False)
            if u.endswith(".json")
        }

    def _packed(self) -> dict[str, dict]:
        try:
            text = storage.read_text(storage.join(self.folder, PACK))
        except FileNotFoundError:
            return {}
        return {e["name"]: e["record"] for e in map(json.loads, text.splitlines()) if e}

    def names(self) -> list[str]:
        return sorted(set(self._packed()) | set(self._loose()))

    def items(self, loose: dict[str, str] | None = None) -> dict[str, dict]:
        """Every record by name; ``loose``: a listing of the loose ones already taken."""
        out = self._packed()
        for name, uri in (self._loose() if loose is None else loose).items():
            try:
                out[name] = json.loads(storage.read_text(uri))
            except FileNotFoundError:  # packed and deleted since the listing: the pack has it
                pass
        return dict(sorted(out.items()))

    def pack(self) -> int:
        """Fold the loose records into the pack once there are more than ``max_loose``; returns
        how many were folded."""
        loose = self._loose()
        if len(loose) <= self.max_loose:
            return 0
        merged = self.items(loose)
        lines = [json.dumps({"name": n, "record": r}, sort_keys=True, default=str) for n, r in merged.items()]
        storage.write_text(storage.join(self.folder, PACK), "\n".join(lines) + "\n")
        for uri in loose.values():
            storage.delete(uri)
        return len(loose)
