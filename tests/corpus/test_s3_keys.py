"""S3 keys are opaque in listings too: ``a//b``, ``a/./b`` and ``a/../b`` are keys of their own,
each listed once -- by the one-process listing and by the parallel one (one Ray task per child)."""

from __future__ import annotations

import os

from tests.corpus.test_sync import shard_rows
from vsd.corpus import Corpus, sync

KEYS = [
    "images/a/1.png",
    "images//x.png",  # a child named "": Arrow reports it as the prefix itself
    "images//deep//z.png",
    "images/./y.png",  # a child named "."
    "images/../w.png",  # a child named ".."
    "images/sub/../v.png",
    "images/top.png",
]


def test_odd_keys_are_listed_exactly_once_serially_and_in_parallel(ray_local, s3_bucket):
    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    bucket = s3_bucket[len("s3://") :]
    for key in [*KEYS, "images-other/not-mine.png"]:
        client.put_object(Bucket=bucket, Key=key, Body=key.encode())
    want = sorted(f"{s3_bucket}/{k}" for k in KEYS)
    for parallel in (False, True):
        corpus = Corpus.open_or_create(f"{s3_bucket}/corpus-{parallel}")
        report = sync(corpus, f"{s3_bucket}/images/", shard_rows=3, parallel=parallel)
        assert sorted(r["uri"] for r in shard_rows(corpus)) == want, parallel
        assert report.listed == report.new == len(KEYS)
