"""Which Ray cluster a command joins: the one the user named, else a new local one.

``ray.init()`` with no address joins "the latest cluster" a ``ray start`` left on the machine --
a leftover from another project, or a stopped one, failed runs that never asked for it. So a
command joins ``--ray-address`` or ``RAY_ADDRESS`` when given (``ray job submit`` sets the latter
for its drivers) and otherwise starts its own local cluster, and says which it did. That local
cluster has no dashboard: its processes took ~2 s of CPU in a 30 s run on a 2-core machine, from
the core the engine shares (`bench/pipeline_efficiency.py`); for one, `ray start --head` and pass
``--ray-address``.
"""

from __future__ import annotations

import os


def connect(address: str | None = None) -> str:
    """Initialise Ray as described above (a no-op if it already is); returns a line saying which."""
    import ray

    if ray.is_initialized():
        return f"ray: using the connected cluster at {ray.get_runtime_context().gcs_address}"
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "local":
        ray.init(address=address)
        return f"ray: joined the cluster at {address}"
    ray.init(address="local", include_dashboard=False)
    return f"ray: started a local cluster ({ray.get_runtime_context().gcs_address}; no dashboard)"
