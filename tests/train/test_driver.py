"""Driver pieces that need no cluster: metrics lines, storage arguments, the finished-run check."""

from __future__ import annotations

import json

from vsd import storage
from vsd.config import from_dict
from vsd.train.config import TrainConfig
from vsd.train.driver import MetricsWriter, storage_args


def _report(step: int, loss: float, rank: int, resumed_from: int = 0) -> dict:
    return {
        "step": step,
        "epoch": step / 4,
        "rank": rank,
        "resumed_from": resumed_from,
        "total_steps": 4,
        "final": step == 4,
        "loss": loss,
        "lr": 1e-3,
        "samples": 2,
        "tokens": 100,
        "samples_per_s": 4.0,
        "tokens_per_s": 200.0,
        "samples_dropped": 0,
        "samples_truncated": 1,
        "step_time_s": 0.5 + rank,
    }


def test_metrics_combine_workers_and_a_redone_step_replaces_its_line(tmp_path):
    writer = MetricsWriter(str(tmp_path), flush_s=0.0)
    writer.after_report(None, [_report(1, 2.0, 0), _report(1, 4.0, 1)], None)
    writer.after_report(None, [_report(2, 1.0, 0), _report(2, 1.0, 1)], None)
    writer.after_report(None, [_report(2, 0.5, 0, 1), _report(2, 0.5, 1, 1)], None)  # redone after a restore
    rows = [json.loads(x) for x in storage.read_text(str(tmp_path / "metrics.jsonl")).splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["loss"] == 3.0 and rows[0]["loss_per_worker"] == [2.0, 4.0]
    assert rows[0]["tokens_per_s"] == 400.0 and rows[0]["tokens"] == 200 and rows[0]["workers"] == 2
    assert rows[0]["step_time_s"] == 1.5 and rows[0]["samples_truncated"] == 2
    assert rows[1]["loss"] == 0.5 and rows[1]["resumed_from"] == 1
    # A relaunch starts from the lines already written.
    assert sorted(MetricsWriter(str(tmp_path)).rows) == [1, 2]


def test_s3_storage_is_a_filesystem_plus_bucket_path_never_a_uri_with_a_filesystem(tmp_path):
    import pyarrow.fs as pafs

    s3 = storage_args("s3://bucket/runs/a")
    assert s3["storage_path"] == "bucket/runs/a" and isinstance(s3["storage_filesystem"], pafs.S3FileSystem)
    local = storage_args(str(tmp_path / "run"))
    assert local == {"storage_path": str(tmp_path / "run")}


def test_a_finished_run_is_not_started_again(tmp_path, train_config_dict):
    import ray
    import torch
    from safetensors.torch import save_file

    from vsd.train.driver import train

    ckpt = tmp_path / "run" / "checkpoints" / "checkpoint_00000004"
    (ckpt / "adapter").mkdir(parents=True)
    (ckpt / "adapter" / "adapter_config.json").write_text("{}")
    save_file({"lora_A": torch.zeros(2, 2)}, str(ckpt / "adapter" / "adapter_model.safetensors"))
    (ckpt / "meta.json").write_text(json.dumps({"step": 4, "base_model": "tiny:llava", "total_steps": 4}))
    cfg = from_dict(TrainConfig, train_config_dict(optim={"max_steps": 4}))
    was_up = ray.is_initialized()
    result = train(cfg, str(tmp_path / "run"))
    assert ray.is_initialized() == was_up  # no cluster was started or used
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    assert result.error is None and result.checkpoint.endswith("checkpoint_00000004")
    assert result.metrics == {"step": 4, "resumed_from": 4, "final": True}


def test_a_worker_group_failure_is_one_line_naming_the_rank_and_why():
    from ray.train.v2.api.exceptions import WorkerGroupError

    from vsd.train.driver import _one_line

    died = RuntimeError(
        "The actor died unexpectedly before finishing this task.\n\tclass_name: RayTrainWorker\n"
        "The actor died because its node has died. Node Id: 329c54"
    )
    collateral = RuntimeError("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer")
    error = WorkerGroupError("[Rank 1 Error Snippet]:\n...", {0: collateral, 1: died})
    assert (
        _one_line(error) == "rank 1: RuntimeError: The actor died because its node has died. Node Id: 329c54"
    )
    assert _one_line(ValueError("x\nKeyError: 'loss'\n")) == "KeyError: 'loss'"


def test_a_lost_node_reported_as_a_failed_health_check_is_named_as_a_dead_node():
    """Ray reports a killed node's worker as a failed health check; the cluster's node table (the
    caller's ``dead_nodes``) says which rank's node is gone, and the line says so."""
    from ray.train.v2.api.exceptions import WorkerGroupError

    from vsd.train.driver import _one_line

    health = RuntimeError("WorkerHealthCheckFailedError: Worker health check failed: timed out after 30 s")
    collateral = RuntimeError("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer")
    error = WorkerGroupError("[Rank 0 Error Snippet]:\n...", {0: collateral, 1: health})
    line = _one_line(error, {1: "1f481888661116262b33ecead"})
    assert line.startswith(
        "rank 1: its node has died (1f4818886611): RuntimeError: WorkerHealthCheckFailedError"
    )
    assert _one_line(error, {}).startswith("rank 0: RuntimeError: [../gloo")  # nothing known dead: first rank


def _checkpoint(uri: str, meta: dict) -> None:
    storage.write_text(storage.join(uri, "adapter", "adapter_config.json"), "{}")
    storage.write_text(storage.join(uri, "meta.json"), json.dumps(meta))


def test_the_step_resumed_from_gets_its_line_from_the_checkpoint_when_its_reports_were_lost(tmp_path):
    """A node lost right after checkpoint 2 was stored, before the controller collected step 2."""
    from vsd.model.checkpoints import checkpoint_uri

    run = str(tmp_path / "run")
    meta = {
        "step": 2,
        "epoch": 0.5,
        "total_steps": 4,
        "loss": 1.5,
        "loss_per_worker": [1.0, 2.0],
        "world_size": 2,
    }
    _checkpoint(checkpoint_uri(run, 2), meta)
    writer = MetricsWriter(run, flush_s=0.0)
    writer.after_report(None, [_report(1, 2.0, 0), _report(1, 2.0, 1)], None)
    writer.after_report(None, [_report(3, 1.0, 0, resumed_from=2), _report(3, 1.0, 1, resumed_from=2)], None)
    rows = [json.loads(x) for x in storage.read_text(storage.join(run, "metrics.jsonl")).splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[1]["from_checkpoint"] and rows[1]["loss"] == 1.5 and rows[1]["loss_per_worker"] == [1.0, 2.0]
    assert rows[1]["checkpoint"] == "checkpoint_00000002" and rows[1]["workers"] == 2
    assert "from_checkpoint" not in rows[2]


def test_every_step_up_to_the_resume_is_filled_from_the_checkpoints_reports(tmp_path):
    """The controller collected nothing before the node died: steps 1-2 come from checkpoint 2's
    reports (every rank's, since the checkpoint before), combined as if they had been collected."""
    from vsd.model.checkpoints import checkpoint_uri

    run = str(tmp_path / "run")
    reports = [[_report(1, 2.0, 0), _report(1, 4.0, 1)], [_report(2, 1.0, 0), _report(2, 3.0, 1)]]
    _checkpoint(
        checkpoint_uri(run, 2),
        {"step": 2, "total_steps": 4, "loss": 2.0, "world_size": 2, "reports": reports},
    )
    writer = MetricsWriter(run, flush_s=0.0)
    writer.after_report(None, [_report(3, 1.0, 0, resumed_from=2), _report(3, 1.0, 1, resumed_from=2)], None)
    rows = [json.loads(x) for x in storage.read_text(storage.join(run, "metrics.jsonl")).splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[0]["from_checkpoint"] and rows[0]["loss"] == 3.0 and rows[0]["loss_per_worker"] == [2.0, 4.0]
    assert (
        rows[1]["loss"] == 2.0
        and rows[1]["checkpoint"] == "checkpoint_00000002"
        and rows[1]["resumed_from"] == 0
    )
    assert rows[2]["resumed_from"] == 2 and "from_checkpoint" not in rows[2]


def test_only_a_lost_worker_makes_the_driver_look_for_a_dead_node():
    """An ordinary error in the training loop is reported at once; the node-table wait is only for
    failures that say the worker process is gone."""
    from vsd.train.driver import _worker_lost

    assert _worker_lost(RuntimeError("WorkerHealthCheckFailedError: Worker health check failed"))
    assert _worker_lost(RuntimeError("The actor died because its node has died. Node Id: 329c54"))
    assert not _worker_lost(KeyError("loss")) and not _worker_lost(ValueError("bad batch shape"))


def test_the_ranks_nodes_come_from_the_checkpoint_when_no_metrics_line_was_written(tmp_path):
    """The node died right after checkpoint 2, before the controller collected any report: the
    metrics file is empty, the checkpoint's stored reports still say where each rank ran."""
    from vsd.model.checkpoints import checkpoint_uri
    from vsd.train.driver import rank_nodes

    run = str(tmp_path / "run")
    reports = [[{**_report(s, 1.0, r), "node_id": f"node-{r}"} for r in (0, 1)] for s in (1, 2)]
    _checkpoint(checkpoint_uri(run, 2), {"step": 2, "world_size": 2, "reports": reports})
    assert rank_nodes(run) == {0: "node-0", 1: "node-1"}
    storage.write_text(
        storage.join(run, "metrics.jsonl"), json.dumps({"step": 1, "nodes": ["old-0", "old-1"]}) + "\n"
    )  # older than the checkpoint
    assert rank_nodes(run) == {0: "node-0", 1: "node-1"}
    storage.write_text(
        storage.join(run, "metrics.jsonl"), json.dumps({"step": 3, "nodes": ["a", "b"]}) + "\n"
    )
    assert rank_nodes(run) == {0: "a", 1: "b"}
    assert rank_nodes(str(tmp_path / "nothing")) == {}
