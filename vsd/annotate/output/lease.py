"""One writer per output at a time: a lease taken before a run writes anything, refused with one line.

Two nights that overlap (last night's run still going when tonight's cron starts, a manual run
during the cron's) must never both annotate. The table format detects conflicting commits, but two
appends of different files do not conflict -- both would land, and every image would be there
twice. So a run first takes the output's lease:

    __vsd/lease/g-<generation, 12 digits>.json   {run_id, host, pid, started, expires}

A generation file is created exclusively (``O_EXCL`` on a local disk, ``If-None-Match: *`` on S3,
the conditional put the Delta log relies on too), so of two runs racing for the same generation one
wins. The holder renews its own file every ``ttl / 3`` seconds; a later run may take the next
generation when the newest one is released, expired, or held by a process that no longer exists on
this host (a killed run must not block its own rerun for a whole ttl). Before every commit the
holder checks that no newer generation exists (fencing): a holder that stalled past its ttl and
lost the lease stops instead of writing beside the new holder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import posixpath
import socket
import threading
import time
from dataclasses import dataclass

from vsd import storage
from vsd.errors import VSDError

LEASE_DIR = "lease"
DEFAULT_TTL_S = 120.0
KEEP_GENERATIONS = 4


class OutputBusy(VSDError):
    """Another live run holds the output's lease: EX_TEMPFAIL, "try again later" to a scheduler."""

    exit_code = 75


class LeaseLost(VSDError):
    """This run's lease was taken over (it stalled past its ttl): it must stop writing."""

    exit_code = 75


@dataclass(frozen=True)
class Holder:
    generation: int
    run_id: str
    host: str
    pid: int
    started: str
    expires: float
    released: bool = False

    def alive(self, now: float) -> bool:
        if self.released or self.expires <= now:
            return False
        if self.host == socket.gethostname() and not _pid_alive(self.pid):
            return False  # killed on this machine: its rerun need not wait out the ttl
        return True

    def describe(self) -> str:
        until = dt.datetime.fromtimestamp(self.expires, dt.timezone.utc).strftime("%H:%M:%S UTC")
        return (
            f"run {self.run_id} (host {self.host}, pid {self.pid}, since {self.started}; lease until {until})"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def create_exclusive(uri: str, data: bytes) -> bool:
    """Create ``uri`` only if nothing is there; False if it exists. Atomic on a local disk
    (``O_EXCL``) and on S3 (a conditional PUT, answered 412 when the key exists)."""
    if storage.is_s3(uri):
        return _s3_put_if_absent(uri, data)
    _, path = storage.resolve(uri)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return True


def _s3_put_if_absent(uri: str, data: bytes) -> bool:
    import boto3
    from botocore.exceptions import ClientError

    storage.skip_metadata_lookup()
    bucket, _, key = uri[len("s3://") :].partition("/")
    client = boto3.client("s3", endpoint_url=storage.s3_endpoint(), region_name=storage.s3_region())
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in (
            "PreconditionFailed",
            "412",
            "ConditionalRequestConflict",
        ):
            return False
        raise
    return True


class Lease:
    """The output's writer lease for one run (see the module doc). Use as a context manager."""

    def __init__(self, vsd_dir: str, run_id: str, ttl_s: float = DEFAULT_TTL_S):
        self.dir = storage.join(vsd_dir, LEASE_DIR)
        self.run_id = run_id
        self.ttl_s = ttl_s
        self.generation = 0
        self.started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost = False

    # ------------------------------------------------------------------ reading
    def _generations(self) -> list[int]:
        out = []
        for uri in storage.list_files(self.dir, recursive=False):
            name = posixpath.basename(uri)
            if name.startswith("g-") and name.endswith(".json") and name[2:-5].isdigit():
                out.append(int(name[2:-5]))
        return sorted(out)

    def _uri(self, generation: int) -> str:
        return storage.join(self.dir, f"g-{generation:012d}.json")

    def _holder(self, generation: int) -> Holder | None:
        try:
            return Holder(generation=generation, **json.loads(storage.read_text(self._uri(generation))))
        except (OSError, ValueError, TypeError):
            return None  # deleted meanwhile, or not a lease record: treat as free

    def _mine(self, generation: int) -> bool:
        """Whether ``generation`` holds this very lease: a PUT whose answer was lost succeeded,
        and its retry was told 412 by our own write."""
        holder = self._holder(generation)
        return holder is not None and (holder.run_id, holder.pid, holder.started) == (
            self.run_id,
            os.getpid(),
            self.started,
        )

    def _record(self, released: bool = False) -> bytes:
        return json.dumps(
            {
                "run_id": self.run_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": self.started,
                "expires": time.time() + self.ttl_s,
                "released": released,
            }
        ).encode()

    # ------------------------------------------------------------------ the protocol
    def acquire(self) -> Lease:
        for _ in range(8):  # lost a race for a generation: look again
            generations = self._generations()
            newest = generations[-1] if generations else 0
            holder = self._holder(newest) if newest else None
            if holder is not None and holder.alive(time.time()):
                raise OutputBusy(
                    f"output: another run is writing this output: {holder.describe()}; this run stops "
                    "without writing (run it again when that one has finished)"
                )
            if create_exclusive(self._uri(newest + 1), self._record()) or self._mine(newest + 1):
                self.generation = newest + 1
                for old in generations[:-KEEP_GENERATIONS]:
                    with contextlib.suppress(OSError):
                        storage.delete(self._uri(old))
                self._thread = threading.Thread(target=self._renew_loop, name="vsd-lease", daemon=True)
                self._thread.start()
                return self
        raise OutputBusy("output: could not take the writer lease (other runs keep taking it); try again")

    def check(self) -> None:
        """Fencing before a commit: stop if a newer generation exists (the lease was taken over)."""
        newer = [g for g in self._generations() if g > self.generation]
        if self._lost or newer:
            self._lost = True
            holder = self._holder(newer[-1]) if newer else None
            raise LeaseLost(
                f"output: this run lost its writer lease to {holder.describe() if holder else 'another run'} "
                f"(it stalled past its {self.ttl_s:.0f} s lease); it stops: what it committed stays, the "
                "rest is done by a later run"
            )

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.check()
                storage.write_bytes(self._uri(self.generation), self._record())
            except LeaseLost:
                return
            except OSError:
                continue  # storage hiccup: try again before the lease runs out

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.generation and not self._lost:
            with contextlib.suppress(OSError):
                if max(self._generations(), default=0) == self.generation:
                    storage.write_bytes(self._uri(self.generation), self._record(released=True))

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
