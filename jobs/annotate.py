"""`ray job submit` entrypoint of the annotation job (the nightly RayJob / RayCronJob runs this).

    ray job submit --working-dir . -- python jobs/annotate.py \
        --config jobs/configs/annotate-nightly-llava15-13b-sglang.yaml \
        --input s3://corpus/images/ --output s3://annotations/vsd/

Same arguments as `vsd annotate`; inside a submitted job ``ray.init()`` joins the job's cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo (ray's --working-dir) holds vsd/

from vsd.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["annotate", *sys.argv[1:]]))
