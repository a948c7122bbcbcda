"""`vsd delete`: take images out of an output's current rows (a takedown, a licence withdrawn).

The rows leave the current table in one commit (the data files holding them are rewritten without
them, as a changed source's old rows are); earlier nights still show them through ``as_of`` until
the table is vacuumed. Their images stay in the output's key set, so a later night does not
annotate them again while the files are unchanged: remove them from the corpus as well.
"""

from __future__ import annotations

import argparse
import getpass
import json

from vsd import storage
from vsd.annotate.index import Output
from vsd.annotate.output import table
from vsd.annotate.output.lease import Lease
from vsd.errors import VSDError


def delete_sources(root: str, uris: list[str], reason: str) -> tuple[int | None, int]:
    """Remove every current row of the given source URIs, in one commit; (version, rows removed)."""
    out = Output(root.rstrip("/"))
    if not table.exists(out.root):
        raise VSDError(f"output: {root} is not an annotation output (no table there)")
    with Lease(out.vsd, "delete") as lease:
        lease.check()
        return remove_uris(out.root, uris, {"vsd.operation": "delete", "vsd.reason": reason})


def remove_uris(
    root: str, uris: list[str], meta: dict[str, str], paths: set[str] | None = None
) -> tuple[int | None, int]:
    """One commit taking out every current row of ``uris`` (the caller holds the lease), with
    ``meta`` and who did it in the commit; (version, rows removed), (None, 0) if none matched.
    ``paths``: the data files known to hold those rows (only they are read; None: any file)."""
    from deltalake.transaction import CommitProperties

    delta = table.open_table(root)
    removes, rewritten, n = table.supersede(root, delta, {u: set() for u in uris}, paths=paths)
    if not removes:
        return None, 0
    delta.create_write_transaction(
        rewritten + removes,
        mode="append",
        schema=delta.schema(),
        partition_by=[table.PARTITION],
        commit_properties=CommitProperties(
            custom_metadata={**meta, "vsd.by": getpass.getuser(), "vsd.rows": str(n)}
        ),
    )
    return table.open_table(root).version(), n


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "delete",
        help="take images out of an output's current rows (a takedown), in one commit",
        description="Removes every current row of the given source URIs from OUTPUT's table in one "
        "commit (earlier nights keep them for as_of reads until a vacuum). Exit 0 done (also when "
        "nothing matched: says so), 2 a usage error, 75 another run is writing the output.",
    )
    p.add_argument("output", help="the output root (local or s3://)")
    p.add_argument("--uri", action="append", default=[], help="a source URI to remove (repeatable)")
    p.add_argument("--uris-from", help="a file with one source URI per line (or a JSON list)")
    p.add_argument("--reason", default="", help="why (recorded in the commit)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    uris = list(args.uri)
    if args.uris_from:
        text = storage.read_text(args.uris_from)
        uris += json.loads(text) if text.lstrip().startswith("[") else [u.strip() for u in text.splitlines()]
    uris = sorted({u for u in uris if u})
    if not uris:
        raise VSDError("--uri / --uris-from: give at least one source URI to remove")
    version, n = delete_sources(args.output, uris, args.reason)
    if version is None:
        print(f"nothing to delete: no current row of the {len(uris)} URI(s) in {args.output}")
    else:
        print(f"deleted {n} row(s) of {len(uris)} URI(s) from {args.output} (table version {version})")
    return 0
