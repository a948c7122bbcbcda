"""One torch thread for the proposal tests: the models are tiny, and on a shared 2-core machine a
second OpenMP thread only spins waiting for a core (a 0.1 s forward took minutes that way)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
