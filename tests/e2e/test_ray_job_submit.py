"""The jobs as users run them: `ray job submit --working-dir .` to a multi-node cluster, data on S3.

A private cluster (tests/fixtures/e2e.py: a head without CPUs whose Jobs API listens on 127.0.0.1,
plus two worker nodes, each its own raylet and object store) receives the train job (2 Ray Train
workers placed one per worker node by a custom resource, DeepSpeed ZeRO-2, LoRA on the tiny LLaVA,
checkpoints with optimizer state to S3), then the adapter is merged with `vsd export` (as a user
would, a CLI on the workstation), then the annotation job labels a synthetic VSD corpus on S3 --
two images broken on purpose -- with the merged model, its tasks and actors on the worker nodes.
The Parquet written to S3 is read back and checked against the input.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.fixtures.multinode import REPO, VENV_BIN

pytestmark = pytest.mark.slow

# Each step fails with its own log before pytest's timeout could cut it short (a loaded 2-core
# machine shared with other work: train 4.5-7.5 min, export ~1 min, annotate 1-4.5 min).
TRAIN_TIMEOUT_S, EXPORT_TIMEOUT_S, ANNOTATE_TIMEOUT_S = 720, 300, 420
# What the working-dir upload must never carry (Ray also honours .gitignore, which lists them;
# these stay excluded even where RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1).
UPLOAD_EXCLUDES = [
    ".git",
    ".venv",
    ".venv-sglang",
    ".cache",
    ".pytest_cache",
    "*.egg-info",
    "out",
    "runs",
    "__pycache__",
]
JOB_ENV_KEYS = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "TORCH_EXTENSIONS_DIR",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "TOKENIZERS_PARALLELISM",
)
N_IMAGES = 12
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _run(cmd: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


RAY = str(VENV_BIN / "ray")


def _job_status(head, job_id: str) -> str:
    """The job's status as `ray job status` prints it and as the Jobs REST API gives it."""
    out = _run([RAY, "job", "status", "--address", head.dashboard_url, job_id], head.env, 60)
    assert out.returncode == 0, out.stderr[-2000:]
    printed = ANSI.sub("", out.stdout + out.stderr)
    with urllib.request.urlopen(f"{head.dashboard_url}/api/jobs/{job_id}", timeout=30) as resp:
        api = json.loads(resp.read())["status"]
    return f"{api}: {printed}"


def submit(head, runtime_env: dict, entrypoint: list[str], name: str, log_dir: Path, timeout: float) -> str:
    """`ray job submit` (which waits for the job and tails its logs); asserts SUCCEEDED both from
    the exit status and from `ray job status`. Returns the job's log (the submit command's output)."""
    job_id = f"vsd-e2e-{name}-{uuid.uuid4().hex[:8]}"
    cmd = [
        RAY,
        "job",
        "submit",
        "--address",
        head.dashboard_url,
        "--submission-id",
        job_id,
        "--working-dir",
        str(REPO),
        "--runtime-env-json",
        json.dumps(runtime_env),
        "--",
        *entrypoint,
    ]
    started = time.monotonic()
    try:
        out = _run(cmd, head.env, timeout)
    except subprocess.TimeoutExpired as exc:
        _run([RAY, "job", "stop", "--address", head.dashboard_url, "--no-wait", job_id], head.env, 60)
        pytest.fail(f"{name} job did not finish in {timeout}s:\n{(exc.stdout or '')[-6000:]}")
    log = ANSI.sub("", out.stdout + out.stderr)
    (log_dir / f"{name}.log").write_text(log)  # the whole log, for a failure's post-mortem
    print(f"{name}: `ray job submit` returned {out.returncode} after {time.monotonic() - started:.0f}s")
    assert out.returncode == 0, (
        f"{name} job failed (exit {out.returncode}), full log in {log_dir}:\n{log[-8000:]}"
    )
    status = _job_status(head, job_id)
    assert status.startswith("SUCCEEDED:") and f"Job '{job_id}' succeeded" in status, (
        f"{name} job status: {status}\nlog:\n{log[-8000:]}"
    )
    return log


def _read_parquet(uris: list[str]):
    import pyarrow as pa

    from vsd import storage

    tables = []
    for uri in uris:
        fs, path = storage.resolve(uri)
        tables.append(pq.read_table(path, filesystem=fs))
    return pa.concat_tables(tables)


@pytest.mark.timeout(TRAIN_TIMEOUT_S + EXPORT_TIMEOUT_S + ANNOTATE_TIMEOUT_S + 300)
def test_train_then_annotate_submitted_as_ray_jobs(ray_cluster, s3_bucket, tmp_path):
    import os

    from vsd import storage
    from vsd.data import synthetic
    from vsd.model.checkpoints import latest_checkpoint
    from vsd.model.export import adapter_sha256, export_info
    from vsd.relations import RELATIONS

    run_uri = f"{s3_bucket}/runs/tiny"
    merged_uri = f"{s3_bucket}/models/tiny-merged"
    corpus_uri = f"{s3_bucket}/corpus"
    output_uri = f"{s3_bucket}/annotations"

    # The corpus: 12 synthetic scenes on S3 as VSD JSON + images. Two are broken: one is garbage
    # (the planner cannot even size it), one is a PNG cut short (its header reads, its pixels do
    # not: the error surfaces in the cluster's preprocess tasks). Both must come back as error rows.
    corpus = synthetic.generate(N_IMAGES, corpus_uri, seed=11, size=64)
    records = json.loads(storage.read_text(corpus.vsd1))
    garbage_id, truncated_id = records[3]["img_id"], records[8]["img_id"]
    storage.write_bytes(storage.join(corpus.images, garbage_id), b"this is not an image")
    png = storage.read_bytes(storage.join(corpus.images, truncated_id))
    storage.write_bytes(storage.join(corpus.images, truncated_id), png[: len(png) // 2])
    expected_rows = {f"{r['img_id']}-p{i}" for r in records for i in range(len(r["triple_list"]))}

    # The job's world comes from its runtime env: the S3 endpoint + (dummy) credentials, a model
    # cache of this test's own, and no upload of the venv.
    cache_dir = str(tmp_path / "vsd-cache")
    env_vars = {k: os.environ[k] for k in JOB_ENV_KEYS if k in os.environ}
    env_vars.update(RAY_AUTH_MODE="disabled", VSD_CACHE_DIR=cache_dir)
    runtime_env = {"env_vars": env_vars, "excludes": UPLOAD_EXCLUDES}

    t0 = time.monotonic()
    train_log = submit(
        ray_cluster,
        runtime_env,
        [
            "python",
            "jobs/train.py",
            "--config",
            "jobs/configs/train-tiny-cpu.yaml",
            "--out",
            run_uri,
            "scaling.resources_per_worker.train_slot=1",
        ],
        "train",
        tmp_path,
        TRAIN_TIMEOUT_S,
    )
    t_train = time.monotonic() - t0
    assert "trained to step 12" in train_log, train_log[-4000:]
    checkpoint = latest_checkpoint(run_uri)
    assert re.search(r"checkpoint_0*12$", checkpoint.rstrip("/")), checkpoint
    metrics = [json.loads(x) for x in storage.read_text(storage.join(run_uri, "metrics.jsonl")).splitlines()]
    workers = {name: node for name, node in ray_cluster.node_ids().items() if name != "head"}
    assert all(sorted(r["nodes"]) == sorted(workers.values()) for r in metrics), (
        metrics[-1]["nodes"],
        workers,
    )
    meta = json.loads(storage.read_text(storage.join(checkpoint, "meta.json")))
    assert sorted(meta["optimizer"]["shards"]) == ["rank_00000-of-00002.pt", "rank_00001-of-00002.pt"]

    # Merge the adapter into its base, from the workstation, straight from S3 to S3.
    t1 = time.monotonic()
    env = dict(ray_cluster.env, VSD_CACHE_DIR=cache_dir)
    export = _run(
        [str(VENV_BIN / "vsd"), "export", "--checkpoint", run_uri, "--out", merged_uri], env, EXPORT_TIMEOUT_S
    )
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-3000:]
    sha = export_info(merged_uri).get("adapter_sha256")
    assert sha and sha == adapter_sha256(storage.join(checkpoint, "adapter"))
    t_export = time.monotonic() - t1

    t2 = time.monotonic()
    annotate_log = submit(
        ray_cluster,
        runtime_env,
        [
            "python",
            "jobs/annotate.py",
            "--config",
            "jobs/configs/annotate-tiny-cpu.yaml",
            "--input",
            corpus.vsd1,
            "--output",
            output_uri,
            "--model",
            merged_uri,
            f"input.image_dir={corpus.images}",
            "progress_bars=false",
            # the tiny config's 16-token cap keeps CPU decoding short but contradicts the answer
            # lengths the export records: applied deliberately (vsd/annotate/model_record.py)
            "engine.override=true",
        ],
        "annotate",
        tmp_path,
        ANNOTATE_TIMEOUT_S,
    )
    t_annotate = time.monotonic() - t2

    # The Parquet on S3: one row per (image, pair) of the input, nothing dropped, nothing twice.
    # The dataset is <output>/run_date=*/part-*.parquet (the run's own index lives elsewhere).
    files = [u[len(output_uri) + 1 :] for u in storage.list_files(output_uri)]
    in_partition = [f.split("/") for f in files if f.startswith("run_date=") and f.count("/") == 1]
    parts = [f"{output_uri}/{d}/{n}" for d, n in in_partition if n.endswith(".parquet")]
    run_records = [f"{output_uri}/{f}" for f in files if f.startswith("__vsd/runs/")]
    assert parts, f"no Parquet under {output_uri}: {files}\n{annotate_log[-4000:]}"
    assert len(run_records) == 1, run_records
    rows = _read_parquet(parts).to_pylist()
    row_ids = [r["row_id"] for r in rows]
    assert len(row_ids) == len(set(row_ids)), "a row was written twice"
    assert set(row_ids) == expected_rows

    errors = [r for r in rows if r["status"] == "error"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert sorted(r["image_id"] for r in errors) == sorted([garbage_id, truncated_id]), [
        (r["image_id"], r["error"]) for r in errors
    ]
    assert all(r["error"] for r in errors), "an error row names its reason"
    assert len(ok) == N_IMAGES - 2
    assert all(r["relation"] in RELATIONS for r in ok), {r["relation"] for r in ok}
    assert all(r["model"] == merged_uri and r["adapter_sha256"] == sha for r in rows)
    assert len({r["run_id"] for r in rows}) == 1

    manifest = json.loads(storage.read_text(run_records[0]))
    counts = manifest["counts"]
    assert counts["rows"] == len(rows) == len(expected_rows)
    assert counts["ok"] == len(ok)
    assert sum(counts["error"].values()) == len(errors) == 2
    assert sorted(p.rsplit("/", 1)[1] for p in parts) == sorted(manifest["parts"])
    assert manifest["adapter_sha256"] == sha and manifest["run_id"] == rows[0]["run_id"]
    print(f"timings: train job {t_train:.0f}s, export {t_export:.0f}s, annotate job {t_annotate:.0f}s")
