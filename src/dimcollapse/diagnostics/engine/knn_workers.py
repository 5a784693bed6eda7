"""Threads for the CPU k-NN tile loops: one worker per torch thread, each running its tiles end to end.

A tile's GEMM (BLAS) and its selection (numpy and torch kernels) release the GIL, so W Python threads that
each compute and select their own tiles keep W cores busy, where one thread with a W-threaded BLAS would
leave the cores idle during selection. Inside ``cpu_workers`` every BLAS call and every torch op runs in
one thread, so no library's own pool competes with the workers (a torch pool beside a spinning BLAS pool
made the search 2.9x slower at 2 threads).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

T = TypeVar("T")

_blas: ThreadpoolController | None = None


def _blas_libraries() -> ThreadpoolController:
    """The process's BLAS libraries (numpy's among them: imported above), found once and kept: scanning
    the loaded libraries again costs 0.2-0.8 ms a call, more than a small covariance takes."""
    global _blas
    if _blas is None or not _blas.lib_controllers:
        _blas = ThreadpoolController().select(user_api="blas")
    return _blas


@contextmanager
def cpu_workers() -> Iterator[int]:
    """Yield the number of worker threads (torch.get_num_threads()); BLAS and torch run one thread each."""
    workers = max(1, torch.get_num_threads())
    torch.set_num_threads(1)
    try:
        with _blas_libraries().limit(limits=1):
            yield workers
    finally:
        torch.set_num_threads(workers)


def run_all(fn: Callable[[T], None], tasks: Iterable[T], workers: int) -> None:
    """fn(task) for every task, on ``workers`` threads (in order on the calling thread for one worker or
    one task)."""
    tasks = list(tasks)
    if workers == 1 or len(tasks) < 2:  # no pool for a single task (e.g. one small k-NN query block)
        for task in tasks:
            fn(task)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(fn, tasks):  # re-raises a worker's exception here
            pass


class TileBuffers:
    """One reused tile buffer per thread (np.empty of a fresh buffer would fault its pages in every time)."""

    def __init__(self, shape: tuple[int, int], dtype: np.dtype) -> None:
        self.shape, self.dtype = shape, dtype
        self._local = threading.local()

    def get(self, rows: int, cols: int) -> np.ndarray:
        """This thread's buffer, viewed as a rows x cols tile (row stride: the buffer's width)."""
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = np.empty(self.shape, dtype=self.dtype)
        return buf[:rows, :cols]
