"""Merging small shards as an LSM merges its runs: a year of nights stays a few shards.

Each sync writes its new rows as new shards, so a corpus that gains 1,000 images a night gains a
1,000-row shard a night: 365 small files a year, each a read task and a completion marker in every
output. After its listing, a sync merges the newest small shards (`merge_small`):

- the shards the sync itself just wrote are never merged (`older`): an output that runs every
  night finished every constituent of a merge, and carries it over without reading it.
- a shard is *small* when ``fan_in`` of it still fit in one shard (``rows <= shard_rows / fan_in``);
  ``fan_in`` neighbouring small shards (in name, that is creation, order) are merged at a time,
  the newest run of one size level (``floor(log_fan_in(rows))``) first -- the logarithmic
  method: with a steady night size, ``fan_in - 1`` shards at most per level, each row rewritten
  once per level. With more small shards than ``fan_in`` a level (nights of sizes that never
  line up), the neighbours with the fewest rows are merged whatever their levels.
- the merged shard takes the place of its last constituent in name order (its stem plus
  ``-m<id>``), so "the last row of a URI in name order is the newest" still holds (`vsd redo`).
  Its rows are its constituents' in order, each source key once (two syncs that merged the same
  shards, or a merge a kill interrupted, leave nothing twice once merged again).
- its Parquet footer records what it replaces (``vsd.merged_from``: the tree of shard names down
  to the synced ones), so an output that finished every constituent marks the merged shard
  finished without reading it (`unfinished`); an output that finished some reads it, and the read
  stage's key lookup skips the rows it has.
- the constituents are deleted after the merged shard is written (one PUT). A kill in between
  leaves both; the next sync deletes the constituents the footers name (`finish_killed`). A run
  that planned a constituent and finds it gone reads nothing from it and leaves it unfinished:
  its rows are in the merged shard, which the next run reads or carries over.

The shard name is a digest of its constituents' names: two syncs merging the same shards write
the same file with the same rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math

import pyarrow as pa
import pyarrow.parquet as pq

from vsd import storage
from vsd.corpus.shards import Corpus, Shard

log = logging.getLogger(__name__)

FAN_IN = 4
TREE_KEY = b"vsd.merged_from"


def is_merged(shard: Shard) -> bool:
    stem = shard.name.rsplit("-r", 1)[0]
    tail = stem.rsplit("-", 1)[-1]
    return len(tail) == 9 and tail[0] == "m" and all(c in "0123456789abcdef" for c in tail[1:])


def level(rows: int, fan_in: int = FAN_IN) -> int:
    return int(math.log(max(rows, 1), fan_in) + 1e-9)


def next_group(shards: list[Shard], shard_rows: int, fan_in: int = FAN_IN) -> list[Shard] | None:
    """The next ``fan_in`` neighbouring small shards to merge (module docstring), or None: the
    newest run of one size level; else, once there are more small shards than ``fan_in`` a
    level, the neighbours with the fewest rows."""
    small = shard_rows // fan_in
    windows = [
        shards[i : i + fan_in]
        for i in range(len(shards) - fan_in + 1)
        if all(s.rows <= small for s in shards[i : i + fan_in])
    ]
    same = [w for w in windows if len({level(s.rows, fan_in) for s in w}) == 1]
    if same:
        return same[-1]
    if windows and sum(s.rows <= small for s in shards) > fan_in * (level(small, fan_in) + 1):
        return min(windows, key=lambda w: sum(s.rows for s in w))
    return None


def merge_small(corpus: Corpus, shard_rows: int, fresh: set[str], fan_in: int = FAN_IN) -> list[Shard]:
    """Merge the corpus's small shards until none is due (module docstring), leaving out the
    ``fresh`` ones this sync wrote; the merged shards."""
    finish_killed(corpus)
    merged: list[Shard] = []
    while (group := next_group(older(corpus.shards(), fresh), shard_rows, fan_in)) is not None:
        try:
            merged.append(merge(corpus, group))
        except FileNotFoundError as exc:  # another sync merged (and deleted) them meanwhile
            log.info("corpus %s: a shard to merge is gone (%s); merging stops here", corpus.root, exc)
            break
    return merged


def older(shards: list[Shard], fresh: set[str]) -> list[Shard]:
    """The shards before the first of ``fresh`` in name order: a sync never merges the shards it
    just wrote, so an output that annotates every night has finished every shard a merge takes
    (it carries the merged one over, `unfinished`, instead of reading it again)."""
    out = []
    for shard in shards:
        if shard.name in fresh:
            break
        out.append(shard)
    return out


def merge(corpus: Corpus, group: list[Shard]) -> Shard:
    """One merged shard of ``group`` (in name order), then the constituents deleted."""
    tables, tree, seen = [], [], set()
    for shard in group:
        fs, path = storage.resolve(shard.uri)
        data = pq.read_table(path, filesystem=fs)
        keys = zip(*(data.column(c).to_pylist() for c in ("uri", "size", "version", "image_id")))
        keep = [k not in seen and not seen.add(k) for k in keys]
        tables.append(data.filter(pa.array(keep, pa.bool_())))
        tree.append({"name": shard.name, "from": merged_from(shard) if is_merged(shard) else None})
    digest = hashlib.sha1("\n".join(s.name for s in group).encode()).hexdigest()[:8]
    stem = group[-1].name[len("shard-") :].rsplit("-r", 1)[0]
    merged = corpus.write_shard(
        f"{stem}-m{digest}", pa.concat_tables(tables), {TREE_KEY: json.dumps(tree).encode()}
    )
    for shard in group:
        storage.delete(shard.uri)
    log.info(
        "corpus %s: merged %d shards (%d rows) into %s", corpus.root, len(group), merged.rows, merged.name
    )
    return merged


def merged_from(shard: Shard) -> list[dict]:
    """The tree of names a merged shard replaces (its footer): ``[{"name", "from"}]``."""
    fs, path = storage.resolve(shard.uri)
    meta = pq.read_schema(path, filesystem=fs).metadata or {}
    return json.loads(meta.get(TREE_KEY, b"[]"))


def finish_killed(corpus: Corpus) -> int:
    """Delete constituents that a merged shard replaces but a kill left behind; how many."""
    shards = corpus.shards()
    present = {s.name: s for s in shards}
    gone = 0
    for shard in shards:
        if is_merged(shard) and shard.name in present:
            for node in merged_from(shard):
                left = present.pop(node["name"], None)
                if left is not None:
                    storage.delete(left.uri)
                    gone += 1
    return gone


def _covered(node: dict, finished: set[str]) -> bool:
    return node["name"] in finished or bool(node["from"]) and all(_covered(c, finished) for c in node["from"])


def unfinished(shards: list[Shard], finished: set[str]) -> tuple[list[Shard], list[Shard]]:
    """(shards an output must read, merged shards it finished already: every constituent has its
    completion marker). Only unfinished merged shards' footers are read, once: the caller marks
    the carried ones finished."""
    todo, carried = [], []
    for shard in shards:
        if shard.name in finished:
            continue
        if is_merged(shard):
            try:
                tree = merged_from(shard)
            except FileNotFoundError:  # merged again meanwhile: the newer shard is listed next time
                continue
            if tree and all(_covered(node, finished) for node in tree):
                carried.append(shard)
                continue
        todo.append(shard)
    return todo, carried
