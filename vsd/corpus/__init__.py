"""Input shards: a corpus as immutable Parquet manifest shards, synced night by night.

from vsd.corpus import Corpus, sync
corpus = Corpus.open_or_create("s3://bucket/corpus/")
report = sync(corpus, "s3://bucket/images/")   # only what appeared since becomes new shards
"""

from vsd.corpus.shards import SHARD_SCHEMA, Corpus, Shard, source_key
from vsd.corpus.sync import SyncReport, sync

__all__ = ["SHARD_SCHEMA", "Corpus", "Shard", "SyncReport", "source_key", "sync"]
