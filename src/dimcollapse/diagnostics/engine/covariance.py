"""Streamed float64 covariance of embeddings (SPEC 1.1, DC paper eq. 1): the accumulator behind the spectrum.

C = (1/N) sum_i (z_i - mean z)(z_i - mean z)^T. Rows are consumed in blocks, each converted once into
a reused float64 buffer minus a shift (the mean of the first block), so memory stays O(block * D + D^2)
whatever N. One Gram product per block (numpy's ``A.T @ A``, a BLAS syrk: half the work of a general
product; a torch float64 GEMM on CUDA, where tensors stay on their device) gives both the shifted
cross-product and, through a column of ones in the buffer, the column sums. The mean correction is
therefore small (the shift is within the data's spread of the mean) and cancels no digits; a block whose
mean drifts farther than its spread starts a new shift, and the parts are merged exactly (Chan, Golub &
LeVeque 1979). The cost is the float64 Gram product plus one conversion pass and the D x D eigensolve.
On AVX-512 hosts the CPU blocks are converted and multiplied in cache-sized chunks summed in place
(``gram_kernel.py``: the kernel is chosen per host, by the BLAS core numpy's OpenBLAS runs). On CPU,
block i of a call is summed in lane i mod L (L independent running sums, each folded in block order);
worker threads take the blocks as they come free, so W threads convert and multiply W blocks at once
with no barrier between them, and the result does not depend on W.

Accuracy: forming C squares the condition number, so an eigenvalue lambda_i carries an absolute error of
a few float64 ulps of lambda_max, i.e. a relative error of about 1e-16 * lambda_max / lambda_i (1e-6 at
lambda_i = 1e-10 lambda_max). An SVD of the centred data avoids the squaring but costs far more.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import torch

from dimcollapse.diagnostics.engine import gram_kernel
from dimcollapse.diagnostics.engine.covariance_sums import BlockSlot, Lane, Moments, Segment, lane_count
from dimcollapse.diagnostics.engine.gram_kernel import ChunkSlot
from dimcollapse.diagnostics.engine.inputs import ArrayLike, as_tensor, count_nonfinite_rows
from dimcollapse.diagnostics.engine.knn_workers import cpu_workers, run_all
from dimcollapse.errors import InputError
from dimcollapse.utils.memory import check_allocation

_BLOCK_BYTES = 16 * 2**20  # float64 bytes of one converted block when block_size is not given
_MIN_BLOCK_ROWS = 2048  # fewer rows per BLAS call lose efficiency and the D x D add per block starts to show


def default_block_rows(d: int) -> int:
    """Rows per block: at least 2,048, and enough that one float64 block takes about 16 MB."""
    return max(_MIN_BLOCK_ROWS, _BLOCK_BYTES // (8 * max(d, 1)))


class CovarianceAccumulator:
    """Running float64 (centred or raw) cross-product of rows fed block by block.

    Each block is converted once into a reused float64 buffer minus a shift s (the mean of the first
    block); its Gram product (x - s)^T (x - s) (a BLAS syrk on CPU, a float64 GEMM on CUDA) is added to a
    running sum and the column sums give the mean correction. On CPU, block i of each ``update`` goes to
    lane i mod L (L = 8 for D < 1,448; a stream of one-block batches stays in lane 0); each lane is folded
    in order, worker threads take the blocks as they come free, and the lanes are merged at the end, so
    the result does not depend on the number of threads. A block whose mean lies farther from its lane's
    shift than its own spread (a drifting stream) opens a new segment centred on itself; segments and
    lanes merge exactly (Chan, Golub & LeVeque 1979), so no uncentred sum of large values is differenced.
    """

    def __init__(self, center: bool = True, l2_normalize: bool = False, name: str = "Z") -> None:
        """Start empty; ``center`` subtracts the mean, ``l2_normalize`` scales each row to unit norm first."""
        self.center = center
        self.l2_normalize = l2_normalize
        self.name = name
        self.bad_rows = 0
        self.total_rows = 0
        self._dim: int | None = None
        self._shift: torch.Tensor | None = None  # the first block's mean: every lane's first shift
        self._lanes: list[Lane] = []
        self._buf: torch.Tensor | None = None  # the per-block torch path's buffer (GPUs)
        self._slots: dict[int, BlockSlot | ChunkSlot] = {}  # CPU: one buffer per worker

    @property
    def n(self) -> int:
        """Number of rows accumulated so far."""
        return sum(lane.n for lane in self._lanes)

    @property
    def dim(self) -> int | None:
        """Number of columns seen so far (None before the first block)."""
        return self._dim

    def update(self, block: ArrayLike, block_size: int | None = None) -> None:
        """Add the rows of ``block`` (2-D array/tensor); rows with NaN/Inf are counted, not used."""
        t = as_tensor(block, self.name).detach()
        if t.ndim != 2:
            raise InputError(
                f"{self.name}: every batch must be 2-D (rows x features), got shape {tuple(t.shape)}."
            )
        if self.dim is not None and t.shape[1] != self.dim:
            raise InputError(
                f"{self.name}: batches disagree on the number of columns ({t.shape[1]} vs {self.dim})."
            )
        if t.shape[0] == 0:
            return
        if not self._lanes:  # the D x D sums come next: refuse an impossible size first
            what = f"the {t.shape[1]} x {t.shape[1]} covariance of {self.name}"
            check_allocation(8 * (t.shape[1] + 1) ** 2, what, "Reduce the number of columns")
            self._lanes = [Lane(self.center) for _ in range(lane_count(int(t.shape[1])))]
        self._dim = int(t.shape[1])
        self.total_rows += int(t.shape[0])
        if self.bad_rows:  # an error will be raised at the end: only count, skip the work
            self.bad_rows += count_nonfinite_rows(t)
            return
        rows = block_size or default_block_rows(t.shape[1])
        if self._threaded(t):
            self._update_cpu(t, rows)
            return
        for start in range(0, t.shape[0], rows):
            if not self._update_block(t[start : start + rows]):
                self._reject(t[start:])
                return

    def _threaded(self, t: torch.Tensor) -> bool:
        """True for CPU blocks (numpy worker path); other devices take the per-block torch path."""
        return t.device.type == "cpu"

    def _update_cpu(self, t: torch.Tensor, rows: int) -> None:
        """CPU blocks: worker threads (one-threaded BLAS) take the blocks in order as they come free; block
        i of the call is converted and folded into lane i mod L once that lane has folded block i - L, so
        every lane sums its blocks in the same order whatever the threads. With one lane (a very wide D),
        one thread folds every block with a multi-threaded BLAS."""
        x = t.numpy() if t.dtype in (torch.float32, torch.float64) else t.to(torch.float32).numpy()
        if self._shift is None and self.center:
            self._shift = torch.from_numpy(self._first_shift(x[:rows]))
        starts = list(range(0, x.shape[0], rows))
        lanes = len(self._lanes)
        turn = list(range(lanes))  # the block each lane folds next (a call's block j goes to lane j mod L)
        taken = iter(range(len(starts)))
        ready = threading.Condition()
        failed = threading.Event()

        def work(worker: int) -> None:
            try:
                while not failed.is_set():
                    with ready:
                        j = next(taken, None)
                        if j is None:
                            return
                        lane = j % lanes
                        while turn[lane] != j and not failed.is_set():  # block j - L not folded yet
                            ready.wait()
                    if failed.is_set():
                        return
                    if not self._fold_cpu(worker, self._lanes[lane], x[starts[j] : starts[j] + rows]):
                        failed.set()
                    with ready:
                        turn[lane] = j + lanes
                        ready.notify_all()
            except BaseException:
                failed.set()  # nobody waits for a lane this worker will not advance
                with ready:
                    ready.notify_all()
                raise

        if lanes == 1:
            work(0)
        else:
            with cpu_workers() as workers:
                n_workers = min(workers, len(starts))
                run_all(work, range(n_workers), n_workers)
        if failed.is_set():
            self._reject(t)

    def _first_shift(self, first: np.ndarray) -> np.ndarray:
        """The first block's float64 mean (of its l2-normalised rows when asked): every lane's first shift."""
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf rows are reported by the caller
            if not self.l2_normalize:
                return np.asarray(first.mean(axis=0, dtype=np.float64))
            unit = first.astype(np.float64)
            unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-300)
            return np.asarray(unit.mean(axis=0))

    def _slot(self, worker: int, rows: int, d: int) -> BlockSlot | ChunkSlot:
        """Worker ``worker``'s buffers: a chunk buffer where the in-place syrk is this host's kernel (and
        the blocks run on worker threads: several lanes), else a block buffer of at least ``rows`` rows."""
        slot = self._slots.get(worker)
        chunk = min(gram_kernel.chunk_rows(d), rows)
        if slot is None or (isinstance(slot, ChunkSlot) and slot.buf.shape[0] < chunk):
            syrk = gram_kernel.inplace_syrk() if len(self._lanes) > 1 and gram_kernel.use_chunks() else None
            if syrk is not None:
                slot = self._slots[worker] = ChunkSlot(d, syrk, chunk)
        if slot is None or (isinstance(slot, BlockSlot) and slot.buf.shape[0] < rows):
            slot = self._slots[worker] = BlockSlot(rows, d)
        return slot

    def _fold_cpu(self, worker: int, lane: Lane, block: np.ndarray) -> bool:
        """Convert ``block`` into the worker's buffer minus the lane's shift (float32 -> float64 and the
        shift in one pass; l2-normalised first if asked), take its products and fold them into the lane."""
        m, d = block.shape
        slot = self._slot(worker, m, d)
        if lane.seg.shift is None:
            lane.seg.shift = self._shift
        if isinstance(slot, ChunkSlot):  # a drifted block is converted again around the lane's new shift
            chunks, l2 = slot, self.l2_normalize
            gram, sums = chunks.products(block, lane.seg.shift, l2)
            return lane.fold(gram, sums, m, lambda _: chunks.products(block, lane.seg.shift, l2))
        x = slot.buf[:m, :d]
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf rows are reported by the caller
            if self.l2_normalize:
                np.copyto(x, block)
                x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
                if lane.seg.shift is not None:
                    x -= lane.seg.shift.numpy()
            elif lane.seg.shift is not None:
                np.subtract(block, lane.seg.shift.numpy(), out=x)
            else:
                np.copyto(x, block)
        gram, sums = slot.products(m)
        xt = torch.from_numpy(x)
        return lane.fold(gram, sums, m, lambda offset: _recentred(xt, offset, slot.products, m))

    def _reject(self, rest: torch.Tensor) -> None:
        """Count the NaN/Inf rows of ``rest`` (a block's Gram product was not finite)."""
        bad = count_nonfinite_rows(rest)
        if not bad:
            raise InputError(
                f"{self.name}: values are so large that their squares overflow float64 "
                f"(max |z| = {float(rest.abs().max()):.3g}). Rescale the data, e.g. Z / Z.abs().max()."
            )
        self.bad_rows += bad

    def _load(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` converted into the first D columns of the reused float64 buffer (l2-normalised if asked).

        The buffer's last column holds ones, so the one Gram product of the buffer also yields the column
        sums (its last row) without a separate pass over the block.
        """
        m, d = t.shape
        buf = self._buf
        if buf is None or buf.shape[0] < m or buf.device != t.device:
            buf = self._buf = torch.empty((m, d + 1), dtype=torch.float64, device=t.device)
            buf[:, d] = 1.0
        x = buf[:m, :d]
        x.copy_(t)
        if self.l2_normalize:
            x.div_(torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-300))
        return x

    def _gram(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x^T x, column sums of x) of the first m buffer rows, from one float64 Gram product of [x, 1]."""
        assert self._buf is not None
        xe = self._buf[:m]
        d = xe.shape[1] - 1
        g = xe.T @ xe
        return g[:d, :d], g[:d, d]

    def _update_block(self, t: torch.Tensor) -> bool:
        """Torch path (tensors stay on their device): add one block to lane 0; False when it holds NaN/Inf."""
        x, m, lane = self._load(t), int(t.shape[0]), self._lanes[0]
        if self.center:
            if self._shift is None:
                self._shift = x.sum(0) / m
            if lane.seg.shift is None:
                lane.seg.shift = self._shift
            x.sub_(lane.seg.shift)
        gram, sums = self._gram(m)
        return lane.fold(gram, sums, m, lambda offset: _recentred(x, offset, self._gram, m))

    def finish_checks(self) -> None:
        """Raise InputError for NaN/Inf rows or fewer than 2 rows in total."""
        if self.bad_rows:
            raise InputError(
                f"{self.name} has {self.bad_rows} of {self.total_rows} rows containing NaN or Inf. "
                "Drop or repair those rows (e.g. keep Z[np.isfinite(Z).all(1)])."
            )
        if self.n < 2:
            raise InputError(f"{self.name} has {self.n} row(s); at least 2 are needed for a covariance.")

    def covariance(self) -> np.ndarray:
        """(1/N) times the accumulated cross-product, as a float64 numpy D x D matrix.

        Open segments that still share the first shift are summed as they are (no mean is formed); the
        rest merge exactly, in lane order; the result is the upper triangle mirrored (the in-place kernel
        sums only that triangle). The lanes are left as they are: more blocks may follow.
        """
        self.finish_checks()
        total, common = Moments(), Segment(self._shift)
        for lane in self._lanes:
            if lane.closed.m2 is not None:
                total.merge(lane.closed.n, lane.closed.mean, lane.closed.m2)
            if lane.seg.gram is None:
                continue
            if lane.seg.shift is self._shift:
                common.add(lane.seg.gram, lane.seg.sums, lane.seg.n)
            else:
                total.merge(*lane.seg.moments(self.center))
        if common.gram is not None:
            total.merge(*common.moments(self.center))
        assert total.m2 is not None
        c = np.triu(total.m2.cpu().numpy() / total.n)
        return c + np.triu(c, 1).T


Products = tuple[torch.Tensor, torch.Tensor]


def _recentred(
    x: torch.Tensor, offset: torch.Tensor, products: Callable[[int], Products], m: int
) -> Products:
    """The products of a drifted block's buffer ``x`` after re-centring it in place by ``offset``."""
    x.sub_(offset)
    return products(m)
