"""Shared test setup: deterministic, single-threaded torch so parallel test processes stay fast."""

from __future__ import annotations

import os

# forced, not defaulted: `make test` exports OMP_NUM_THREADS=2, and the runs that tests start as
# subprocesses must use the same one thread as the in-process runs they are compared with
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
