"""The multi-node fixture itself (tests/fixtures/multinode.py): what the node-fault tests rely on.

Work lands where custom resources say; a killed node takes its raylet, workers and object store
with it (an object stored there is lost, the GCS marks the node dead, none of its processes is
left); a replacement joins; a SIGTERMed node drains and stops within its grace period; stopping
the cluster leaves no process behind.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

DRIVER = """
import json, sys, ray
ray.init(address=sys.argv[1])

@ray.remote(num_cpus=0.1, max_retries=0)
def where(size):
    return ray.get_runtime_context().get_node_id(), b"x" * size  # > 100 KiB: kept in the node's object store

step = sys.argv[2]
if step == "place":
    out = {n: ray.get(where.options(resources={f"node_{n}": 0.1}).remote(10))[0] for n in ("w1", "w2")}
    ref = where.options(resources={"node_w2": 0.1}).remote(1 << 20)
    ray.wait([ref], fetch_local=False)
    print(json.dumps(out))
    sys.stdout.flush()
    sys.stdin.readline()  # the test kills w2 now
    try:
        ray.get(ref, timeout=60)
        print(json.dumps({"lost": False}))
    except (ray.exceptions.ObjectLostError, ray.exceptions.OwnerDiedError, ray.exceptions.GetTimeoutError) as exc:
        print(json.dumps({"lost": type(exc).__name__}))
else:
    print(json.dumps({step: ray.get(where.options(resources={f"node_{step}": 0.1}).remote(10))[0]}))
"""


def _driver(cluster, log, *args: str, stdin=None) -> subprocess.Popen:
    with open(log, "a") as err:
        return subprocess.Popen(
            [sys.executable, "-c", DRIVER, cluster.gcs_address, *args],
            env=cluster.env,
            text=True,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=err,
        )


def _answer(driver: subprocess.Popen, log) -> dict:
    """The driver's next JSON line (anything else it prints is skipped)."""
    for line in driver.stdout:
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"the driver ended without an answer:\n{log.read_text()[-4000:]}")


def test_nodes_place_work_die_with_their_object_store_and_stop_cleanly(multinode_cluster, tmp_path):
    from tests.fixtures.multinode import FAST_FAILURE_DETECTION

    cluster = multinode_cluster(
        workers={"w1": {"num_cpus": 1}, "w2": {"num_cpus": 1}}, extra_env=FAST_FAILURE_DETECTION
    )
    ids = cluster.node_ids()
    assert cluster.node_states() == {"head": "ALIVE", "w1": "ALIVE", "w2": "ALIVE"}

    log = tmp_path / "driver.log"
    driver = _driver(cluster, log, "place", stdin=subprocess.PIPE)
    try:
        placed = _answer(driver, log)
        assert placed == {"w1": ids["w1"], "w2": ids["w2"]}  # custom resources place the work
        killed = cluster.kill_node("w2")
        assert killed and not cluster.nodes["w2"].pids()  # raylet, object store, workers, agents: all gone
        cluster.wait_state("w2", "DEAD")
        driver.stdin.write("\n")
        driver.stdin.flush()
        assert _answer(driver, log)["lost"], "an object in the dead node's store survived"
    finally:
        driver.kill()
        driver.wait()

    r = cluster.add_replacement(num_cpus=1)
    driver = _driver(cluster, log, r.name)
    assert _answer(driver, log) == {r.name: cluster.node_ids()[r.name]}
    driver.wait(timeout=300)

    preempted = cluster.preempt_node("w1", grace_s=60)  # Ray drains for up to 30 s, then stops its processes
    assert preempted["graceful"], preempted  # an idle node drains and stops well within its grace period
    cluster.wait_state("w1", "DEAD")
    assert cluster.node_states()["head"] == "ALIVE"

    assert cluster.stop() == []
    assert all(not node.pids() for node in cluster._started)
