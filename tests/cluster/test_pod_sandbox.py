"""The Ray head pod's securityContext, enforced on this machine, still runs Ray and a vsd job.

The pod spec of cluster/raycluster.yaml is turned into the same constraints with Linux tools: a
private mount namespace where / is read-only and only the ray-head container's emptyDir mount
paths are writable tmpfs, the pod's uid/gid, no capabilities and no_new_privs (setpriv). In it a
real local Ray instance starts with token auth read from a file (RAY_AUTH_TOKEN_PATH, as the
nightly CronJob reads it) and runs tasks that import vsd, torch and transformers and build a tiny
model into ~/.cache. Not simulated: seccomp, the dashboard/Jobs API (kept out to stay clear of the
fixed ports other Ray clusters on a shared machine hold) and the image itself (this machine's
Python stands in). Needs root, unshare and setpriv; skipped elsewhere.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.kube import REPO, doc

pytestmark = pytest.mark.slow

HOME = "/home/ray"
INNER = r"""
set -u
touch {home}/written-to-root 2>/dev/null && echo "ROOT-WRITABLE"
setsid python {job}/job.py > /tmp/job.log 2>&1 &
driver=$!
echo "DRIVER-PGID $driver"
trap 'kill -KILL -- -$driver 2>/dev/null' EXIT TERM INT
wait $driver
tail -20 /tmp/job.log
grep -rihE "read-only file system|permission denied|errno 13|errno 30" /tmp/ray/session_latest/logs /tmp/job.log 2>/dev/null \
  | head -5 | sed 's/^/FS-ERROR /'
grep -q JOB-DONE /tmp/job.log || for f in raylet.out raylet.err gcs_server.out; do
  echo "--- $f"; grep -ihE "error|fail|timed out" /tmp/ray/session_latest/logs/$f 2>/dev/null | tail -4
done
"""
JOB = """
import os, ray
# A local Ray instance, as a pod's processes see it: token auth read from the mounted file.
ray.init(num_cpus=1, include_dashboard=False)

@ray.remote(num_cpus=0.2)
def build(i):
    if i:
        return i
    from vsd.model.tiny import ensure_tiny
    return ensure_tiny("llava")

print("JOB-RESULT", ray.get([build.remote(i) for i in range(4)]))
ray.shutdown()
print("JOB-DONE")
"""


def _can_sandbox() -> bool:
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")):
        return False
    return (
        subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True).returncode
        == 0
    )


def _hidden_ancestor(path: str) -> tuple[str, str] | None:
    """(dir, child) when ``path`` sits under a dir others cannot enter (e.g. /root/.pyenv/...)."""
    parts = Path(path).parts
    for i in range(2, len(parts)):
        here = Path(*parts[:i])
        if not os.stat(here).st_mode & 0o001:
            return str(here), parts[i]
    return None


def _sandbox_script(tmp: Path) -> str:
    pod = doc("raycluster.yaml")["spec"]["headGroupSpec"]["template"]["spec"]
    container = pod["containers"][0]
    uid, gid = pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    writable = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs]
    lines = ["set -eu"]
    hidden = _hidden_ancestor(os.path.realpath(sys.executable))
    if hidden:  # let the pod's uid reach this machine's Python, as the image's own would be
        top, child = hidden
        lines += [
            f"mkdir -p {tmp}/bind && mount --bind {top}/{child} {tmp}/bind",
            f"mount -t tmpfs -o mode=755 tmpfs {top} && mkdir {top}/{child} && mount --bind {tmp}/bind {top}/{child}",
        ]
    lines += [
        f"mount -t tmpfs -o mode=755 tmpfs /home && mkdir -p {HOME} && chown {uid}:{gid} {HOME}",
        # the job's files stay read-only: /tmp is Ray's alone, as in the pod
        f"mkdir -p {tmp}/job && cp {tmp}/job.py {tmp}/inner.sh {tmp}/job/",
        f"printf %s 'sandbox-token-0123456789abcdef0123456789' > {tmp}/job/auth_token",
        f"chmod 0440 {tmp}/job/auth_token && chown {uid}:{gid} {tmp}/job/auth_token",
    ]
    for path in writable:  # mount points inside the image's home; others (/tmp) exist here already
        assert path.startswith(HOME + "/") or os.path.isdir(path), path
        lines.append(f"mkdir -p {path}")
    lines.append("mount -o remount,bind,ro / && mount -o remount,ro /home")
    for path in writable:  # the emptyDirs: the only writable places
        lines.append(f"mount -t tmpfs -o uid={uid},gid={gid},mode=1777 tmpfs {path}")
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": HOME,
        "PYTHONPATH": str(REPO),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": f"{tmp}/job/auth_token",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_raylet_start_wait_time_s": "180",
        "RAY_agent_register_timeout_ms": "180000",
        "RAY_worker_register_timeout_seconds": "180",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": f"{HOME}/.cache/huggingface",
        "TORCH_EXTENSIONS_DIR": f"{HOME}/.cache/torch_extensions",
        "TRITON_CACHE_DIR": f"{HOME}/.cache/triton",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "OMP_NUM_THREADS": "1",
    }
    lines.append(
        f"exec setpriv --reuid {uid} --regid {gid} --clear-groups --inh-caps=-all --bounding-set=-all "
        f"--no-new-privs env -i {' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items())} timeout -k 10 480 bash {tmp}/job/inner.sh"
    )
    (tmp / "job.py").write_text(JOB)
    (tmp / "inner.sh").write_text(INNER.format(home=HOME, job=f"{tmp}/job"))
    return "\n".join(lines)


def _stop_driver(out: str) -> None:
    """The sandbox stops its Ray driver on exit; if it was killed first, stop that process group here."""
    for line in out.splitlines():
        if line.startswith("DRIVER-PGID "):
            try:
                os.killpg(int(line.split()[1]), 9)
            except (ProcessLookupError, PermissionError, ValueError):
                pass


@pytest.mark.skipif(not _can_sandbox(), reason="needs root with unshare and setpriv (mount namespaces)")
def test_ray_head_and_a_vsd_job_run_under_the_pod_security_context(tmp_path):
    tmp = Path("/var/tmp") / f"vsd-sandbox-{os.getpid()}"  # outside /tmp, which the sandbox replaces
    tmp.mkdir(mode=0o755)
    try:
        script = tmp / "sandbox.sh"
        script.write_text(_sandbox_script(tmp))
        os.chmod(tmp, 0o755)
        try:
            result = subprocess.run(
                ["unshare", "-m", "--propagation", "private", "bash", str(script)],
                capture_output=True,
                text=True,
                timeout=780,
            )
            out = result.stdout + result.stderr
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            _stop_driver(out)
            pytest.fail(f"sandboxed Ray run timed out:\n{out[-4000:]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _stop_driver(out)
    assert "ROOT-WRITABLE" not in out  # the root really is read-only for the pod's user
    assert "JOB-RESULT" in out and "JOB-DONE" in out, out[-4000:]
    assert f"'{HOME}/.cache/vsd/tiny/llava-" in out  # the model cache landed in the emptyDir
    assert "FS-ERROR" not in out, out[-4000:]
