"""The Ray Train driver: `train(config, out_uri)` runs the LoRA fine-tune into a run folder.

```
<out>/config.yaml                          the resolved config (what ran)
<out>/metrics.jsonl                        one line per reported step: loss, lr, samples/s, tokens/s
<out>/checkpoints/checkpoint_<step:08d>/   adapter/ + meta.json (Ray Train persists them here)
```

Ray Train's run is named ``checkpoints`` under ``storage_path=<out>``, so its persisted
checkpoints *are* the agreed layout and its own bookkeeping (the checkpoint-manager snapshot)
sits next to them: launching the same ``--out`` again restores that state and the workers resume
from the latest checkpoint instead of starting over. For ``s3://`` the filesystem is passed
explicitly (``storage_filesystem`` + a bucket path, never together with an ``s3://`` URI) so
the endpoint and credentials come from the same place as every other read and write.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from vsd import storage
from vsd.config import ConfigError, dump_yaml, to_dict
from vsd.model.checkpoints import CHECKPOINTS_DIR
from vsd.train.config import TrainConfig

METRICS = "metrics.jsonl"
CONFIG_DUMP = "config.yaml"


@dataclass
class TrainResult:
    run_uri: str
    checkpoint: str | None  # the latest checkpoint folder
    metrics: dict  # rank 0's metrics saved with the latest checkpoint ({step, resumed_from, final} when already done)
    error: str | None


class MetricsWriter:
    """Ray Train callback (runs in the controller): one JSON line per step into ``metrics.jsonl``,
    combining every worker's report (mean loss, summed throughput, each rank's node). A step
    repeated after a restore replaces its earlier line. The file is rewritten whole (S3 has no append), at most
    every ``flush_s`` seconds, and always on checkpoints and the final step.

    A node lost right after a checkpoint was stored, before the controller collected the reports
    of the steps up to it, would leave holes below the step training resumes from: those lines are
    then filled from the checkpoints' meta.json (every rank's reports since the checkpoint before;
    for older checkpoints without them, the checkpoint step's losses), marked ``from_checkpoint``."""

    def __init__(self, run_uri: str, flush_s: float = 10.0, rows_to=None):
        self.run_uri = run_uri
        self.rows_to = rows_to  # a ray.util.queue.Queue the driver reads to print each step
        self.uri = storage.join(run_uri, METRICS)
        self.flush_s = flush_s
        self.rows: dict[int, dict] = {}
        if storage.exists(self.uri):  # a relaunch keeps the history
            for line in storage.read_text(self.uri).splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.rows[int(row["step"])] = row
        self._last_flush = 0.0
        self._filled: set[int] = set()

    @staticmethod
    def combine(metrics: list[dict]) -> dict:
        first = metrics[0]
        row = {k: first[k] for k in ("step", "epoch", "total_steps", "resumed_from", "final") if k in first}
        row["workers"] = len(metrics)
        row["nodes"] = [m.get("node_id") for m in sorted(metrics, key=lambda m: m.get("rank", 0))]  # by rank
        if "loss" in first:
            row["loss"] = sum(m["loss"] for m in metrics) / len(metrics)
            row["loss_per_worker"] = [m["loss"] for m in metrics]
            row["lr"] = first["lr"]
            for key in (
                "samples",
                "tokens",
                "samples_per_s",
                "tokens_per_s",
                "samples_dropped",
                "samples_truncated",
            ):
                row[key] = sum(m[key] for m in metrics)
            row["step_time_s"] = max(m["step_time_s"] for m in metrics)
        row["time"] = time.time()
        return row

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        if not metrics or "loss" not in metrics[0]:
            return
        row = self.combine(metrics)
        if checkpoint is not None:
            row["checkpoint"] = storage.basename(checkpoint.path)
        self.rows[int(row["step"])] = row
        if self.rows_to is not None:
            try:
                self.rows_to.put_nowait(row)
            except Exception:  # noqa: BLE001 - the console is not worth failing the run over
                pass
        resumed = int(row.get("resumed_from") or 0)
        if resumed and resumed not in self._filled:
            self._filled.add(resumed)
            self._fill_from_checkpoints(resumed)
        now = time.monotonic()
        if checkpoint is not None or row.get("final") or now - self._last_flush >= self.flush_s:
            self.flush()
            self._last_flush = now

    def _fill_from_checkpoints(self, resumed: int) -> None:
        """Fill missing lines up to ``resumed`` from the checkpoints at or below it, newest first."""
        from vsd.model.checkpoints import list_checkpoints, read_meta

        try:
            checkpoints = [(s, c) for s, c in list_checkpoints(self.run_uri) if s <= resumed]
        except Exception:  # noqa: BLE001 - a metrics line is not worth failing the run over
            return
        for step, checkpoint in reversed(checkpoints):
            if all(s in self.rows for s in range(1, step + 1)):
                break
            try:
                meta = read_meta(checkpoint)
            except Exception:  # noqa: BLE001
                continue
            name = storage.basename(checkpoint)
            for reports in meta.get("reports") or []:
                row = {**self.combine(reports), "from_checkpoint": True}
                if int(row["step"]) == step:
                    row["checkpoint"] = name
                self.rows.setdefault(int(row["step"]), row)
            if step not in self.rows:  # a checkpoint written before meta.json kept the reports
                row = {
                    k: meta[k]
                    for k in ("step", "epoch", "total_steps", "loss", "loss_per_worker")
                    if k in meta
                }
                self.rows[step] = {
                    **row,
                    "workers": meta.get("world_size"),
                    "checkpoint": name,
                    "from_checkpoint": True,
                    "time": time.time(),
                }

    def after_exception(self, run_context, worker_exceptions) -> None:
        self.flush()

    def flush(self) -> None:
        if self.rows:
            storage.write_text(self.uri, "".join(json.dumps(self.rows[s]) + "\n" for s in sorted(self.rows)))


def _callback_class():
    """MetricsWriter as a Ray Train UserCallback (imported lazily: ray stays out of `vsd --help`)."""
    from ray.train import UserCallback

    return type("MetricsCallback", (MetricsWriter, UserCallback), {})


def check_inputs(cfg: TrainConfig, out_uri: str) -> None:
    """Everything that can be checked without Ray: one line naming the field on failure."""
    from vsd.train.data import check_dataset

    if not out_uri:
        raise ConfigError("out: the run folder (local path or s3:// prefix) is required")
    if cfg.data.uri:
        check_dataset(cfg.data.uri)
    if cfg.scaling.use_gpu and cfg.scaling.resources_per_worker.get("GPU", 1) <= 0:
        raise ConfigError("scaling.resources_per_worker: GPU must be > 0 with use_gpu")


def prepare_inputs(cfg: TrainConfig) -> None:
    """Build on-the-fly inputs (tiny model, synthetic data) once here, before the workers start, so
    the workers of this node find them cached instead of racing to build them; workers on other
    nodes build their own identical copies (same spec, same seed)."""
    from vsd.model.tiny import TINY_SCHEME
    from vsd.train.data import synthetic_dataset

    if cfg.model.base.startswith(TINY_SCHEME):
        from vsd.model.loader import localize

        localize(cfg.model.base)
    if cfg.data.synthetic.scenes:
        synthetic_dataset(cfg.data)


def storage_args(out_uri: str) -> dict:
    """RunConfig storage kwargs: a local absolute path, or our S3 filesystem + bucket path."""
    fs, path = storage.resolve(out_uri)
    if storage.is_s3(out_uri):
        return {"storage_path": path, "storage_filesystem": fs}
    return {"storage_path": path}


def _finished(cfg: TrainConfig, out_uri: str) -> TrainResult | None:
    """The result of a run whose latest checkpoint already reached ``optim.max_steps``, else None.
    (An epoch-based run's length depends on the data and the workers: its workers decide.)"""
    from vsd.model.checkpoints import read_meta
    from vsd.train.checkpoint import latest

    checkpoint = latest(out_uri) if cfg.optim.max_steps else None
    if checkpoint is None:
        return None
    meta = read_meta(checkpoint)
    if int(meta["step"]) < cfg.optim.max_steps:
        return None
    metrics = {"step": int(meta["step"]), "resumed_from": int(meta["step"]), "final": True}
    return TrainResult(run_uri=out_uri, checkpoint=checkpoint, metrics=metrics, error=None)


def _fit(trainer, run_uri: str):
    """(result, None) or (None, one-line error) — run inside a Ray task, see below."""
    import ray.train

    try:
        return trainer.fit(), None
    except ray.train.TrainingFailedError as exc:
        failures = getattr(exc, "worker_failures", None) or {}
        lost = {rank for rank, error in failures.items() if _worker_lost(error)}
        return None, _one_line(exc, _dead_nodes_of(run_uri, lost) if lost else {})


def _worker_lost(error: BaseException) -> bool:
    """Whether a rank's failure says its worker process is gone (a failed health check, a dead
    actor) -- only then can its node have died, and only then is the node table worth a wait;
    an ordinary error in the training loop is reported at once."""
    text = f"{type(error).__name__}: {error}"
    return any(sign in text for sign in ("HealthCheck", "ActorDied", "has died"))


def _dead_nodes_of(run_uri: str, ranks: set[int], wait_s: float = 15.0) -> dict[int, str]:
    """{rank: node id} for the failed ranks whose node the cluster reports dead. Ray reports a lost
    node's workers as failed health checks, which does not say the node is gone; the ranks' nodes
    come from `rank_nodes`, and the cluster's node table says which died (it may take a few
    seconds to notice, hence the short wait)."""
    import ray

    known = rank_nodes(run_uri)
    mine = {r: known[r] for r in ranks if known.get(r)}
    deadline = time.monotonic() + wait_s
    while mine:
        dead = {n["NodeID"] for n in ray.nodes() if not n.get("Alive", True)}
        found = {r: node for r, node in mine.items() if node in dead}
        if found or time.monotonic() > deadline:
            return found
        time.sleep(1.0)
    return {}


def rank_nodes(run_uri: str) -> dict[int, str]:
    """{rank: node id} as last recorded: from the newer of the last metrics line and the newest
    checkpoint's stored reports. A node lost right after a checkpoint often leaves metrics.jsonl
    without a line yet (the controller had not collected the reports), never the checkpoint."""
    from vsd.model.checkpoints import list_checkpoints, read_meta

    lines = []  # the last metrics line, and the newest checkpoint's last step combined the same way
    try:
        rows = [
            json.loads(x) for x in storage.read_text(storage.join(run_uri, METRICS)).splitlines() if x.strip()
        ]
        lines += [row for row in rows[-1:] if row.get("nodes")]
    except (OSError, ValueError):
        pass
    try:
        checkpoints = list_checkpoints(run_uri)  # the newest one with a meta.json: only its reports are read
        reports = (read_meta(checkpoints[-1][1]).get("reports") or [[]])[-1] if checkpoints else []
        lines += [MetricsWriter.combine(reports)] if reports else []
    except Exception:  # noqa: BLE001 - a better error line is not worth a second failure
        pass
    newest = max(lines, key=lambda row: int(row.get("step", 0)), default={})
    return {rank: node for rank, node in enumerate(newest.get("nodes") or []) if node}


def _one_line(exc: BaseException, dead_nodes: dict[int, str] | None = None) -> str:
    """The most telling line of a (multi-worker, multi-traceback) training failure. A worker-group
    failure names the first failed rank and why (e.g. its node died), not Ray's generic header."""
    failures = getattr(exc, "worker_failures", None) or {}
    if failures:
        dead_nodes = dead_nodes or {}
        # A dead worker (its node lost) is the cause; the others' broken collectives are collateral.
        rank, error = min(
            failures.items(), key=lambda kv: (kv[0] not in dead_nodes, " because " not in str(kv[1]), kv[0])
        )
        lines = [x.strip() for x in str(error).splitlines() if x.strip()]
        why = next((x for x in lines if " because " in x), lines[0] if lines else "")
        if rank in dead_nodes and "node has died" not in why:
            return f"rank {rank}: its node has died ({dead_nodes[rank][:12]}): {type(error).__name__}: {why}"[
                :300
            ]
        return f"rank {rank}: {type(error).__name__}: {why}"[:300]
    lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
    causes = [x for x in lines if x.split(":", 1)[0].endswith(("Error", "Exception"))]
    return (causes[0] if causes else lines[0] if lines else type(exc).__name__)[:300]


def _own_state_api() -> str:
    """The State API (dashboard) URL of the cluster we are connected to, or, when it runs none, an
    address nobody answers (the check then reports "unavailable" and never cleans up)."""
    import json
    import urllib.request

    import ray
    from ray._private import ray_constants
    from ray.experimental import internal_kv

    address = internal_kv._internal_kv_get(
        ray_constants.DASHBOARD_ADDRESS, namespace=ray_constants.KV_NAMESPACE_DASHBOARD
    )
    session = ray._private.worker.global_worker.node.session_name
    if address:
        url = f"http://{address.decode()}"
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=3) as reply:
                if json.load(reply).get("session_name") == session:
                    return url
        except (OSError, ValueError):
            pass
    return "http://127.0.0.1:9"


def _fit_pinned_to_this_cluster(trainer, run_uri: str, rows=None, progress=None):
    """``trainer.fit()`` with the State API pinned to the cluster we are connected to, for the
    controller and everything it starts.

    Ray Train's placement-group cleaner asks the State API whether the controller is alive. It
    finds the API by auto-detection, and without a dashboard falls back to 127.0.0.1:8265: on a
    host running several Ray clusters (CI, a dev box) that is another cluster, which does not know
    our controller, and the cleaner then tears down our workers mid-run. Running fit in a task whose
    runtime_env pins ``RAY_ADDRESS`` and ``RAY_API_SERVER_ADDRESS`` (inherited by the controller and
    the cleaner) makes the check ask our own cluster, or nobody.
    """
    import ray

    if not ray.is_initialized():
        ray.init()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    env = {"RAY_ADDRESS": ray.get_runtime_context().gcs_address, "RAY_API_SERVER_ADDRESS": _own_state_api()}
    # On the driver's node (the head, for a job), never on a worker node: Ray Train attaches its
    # controller to the node fit runs on, and losing a worker node must not take the controller along.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    task = ray.remote(num_cpus=0, max_retries=0)(_fit).options(
        runtime_env={"env_vars": env}, scheduling_strategy=here
    )
    ref = task.remote(trainer, run_uri)
    if rows is None or progress is None:
        return ray.get(ref)
    console = True
    while True:  # print each step's row as the controller combines it
        ready, _ = ray.wait([ref], timeout=0.5)
        try:
            while console and not rows.empty():
                progress(rows.get_nowait())
        except ray.exceptions.RayError:  # the queue went with a lost node: the table stops, not the run
            console = False
        if ready:
            return ray.get(ref)


def _quiet_logging(quiet: bool) -> dict:
    """RunConfig arguments that keep Ray Train's INFO lines (every report as a ``TrainingReport``)
    off the console when the driver prints its own step table."""
    if not quiet:
        return {}
    import ray.train

    from vsd.train.console import RAY_TRAIN_LOG_LEVEL

    return {"logging_config": ray.train.LoggingConfig(log_level=RAY_TRAIN_LOG_LEVEL)}


def train(cfg: TrainConfig, out_uri: str, progress=None) -> TrainResult:
    """Run (or resume) the fine-tune; returns where the adapter is. Config problems raise
    ConfigError before any Ray cluster is touched. ``progress``: called on the driver with each
    step's combined row (`MetricsWriter.combine`), e.g. `vsd.train.console.StepTable`; with it, Ray
    Train's own per-report console lines are turned down (its log files keep them)."""
    check_inputs(cfg, out_uri)
    finished = _finished(cfg, out_uri)
    if finished is not None:  # launched again after it finished: no cluster, nothing redone
        return finished
    prepare_inputs(cfg)
    storage.makedirs(out_uri)
    storage.write_text(storage.join(out_uri, CONFIG_DUMP), dump_yaml(cfg))

    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from vsd.train.worker import train_loop_per_worker

    # Workers get an absolute local path: their working directory is not the driver's.
    workers_uri = out_uri if storage.is_s3(out_uri) else storage.resolve(out_uri)[1]
    resources = dict(cfg.scaling.resources_per_worker)
    if cfg.scaling.use_gpu:
        resources.setdefault("GPU", 1)
    rows = None
    if progress is not None:
        from ray.util.queue import Queue

        if not ray.is_initialized():
            ray.init()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # On the driver's node, like the controller: losing a worker node must not take it along.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        rows = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": to_dict(cfg),
            "run_uri": workers_uri,
            "quiet_reports": progress is not None,
        },
        torch_config=TorchConfig(backend="nccl" if cfg.scaling.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.scaling.num_workers, use_gpu=cfg.scaling.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=CHECKPOINTS_DIR,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.checkpoint.keep_n),
            failure_config=ray.train.FailureConfig(max_failures=cfg.failure.max_failures),
            callbacks=[_callback_class()(out_uri, rows_to=rows)],
            **_quiet_logging(progress is not None),
            **storage_args(out_uri),
        ),
    )
    try:
        result, error = _fit_pinned_to_this_cluster(trainer, out_uri, rows, progress)
    finally:
        if rows is not None:
            with contextlib.suppress(Exception):  # already gone with its node: nothing to release
                rows.shutdown()
    from vsd.train.checkpoint import latest

    metrics: dict[str, Any] = dict(result.metrics or {}) if result is not None else {}
    return TrainResult(run_uri=out_uri, checkpoint=latest(out_uri), metrics=metrics, error=error)
