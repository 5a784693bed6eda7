"""The one distributed module: world size / rank, collectives with correct gradients, gathers.

Every layer above (objectives, regularizers, models, training) asks this module for the world, so
``local_only()`` is honoured everywhere.

Everything here is a no-op (identity / local statistics) when ``torch.distributed`` is not initialised,
the world size is 1, or inside ``with local_only():`` (for calls made on one process only).

Gradient convention (read this before writing a distributed loss)
-----------------------------------------------------------------
Let W be the world size, N the global batch (sum of the local batches n_k), L the loss that a single
process would compute on the whole global batch. DDP *averages* parameter gradients over processes.
Every objective (objectives/) returns on process k a tensor L_k whose autograd graph satisfies

    sum_k L_k = W * L                              (value convention)
    grad of the local inputs z_k on process k = W * dL/dz_k     (gradient convention)

so that DDP's average (1/W) sum_k (W dL/dz_k)(dz_k/dtheta) = dL/dtheta reproduces the single-process
gradient exactly, and the mean of the logged per-process losses equals L.

Why the second line follows from the first: the collectives below are differentiated as their exact
adjoints. ``all_reduce_sum`` (y_j = sum_k x_k on every j) back-propagates ybar -> sum_j ybar_j;
``all_gather_with_grad`` (y_j = concat_k x_k on every j) back-propagates to x_k the sum over processes
of the gradient rows that belong to x_k. Hence the gradient process k obtains for its inputs is
d(sum_j L_j)/dz_k = W dL/dz_k.

Two kinds of loss meet the value convention:
- per-anchor losses (NT-Xent with gathered negatives, DirectCLR, BYOL, SimSiam): L = (1/N) sum_i l_i,
  and process k returns its *local share* L_k = (W/N) sum_{i local} l_i (``local_share``); with equal
  local batches that is just the local mean;
- losses of global batch statistics (Barlow Twins, VICReg): every process computes the same value
  L_k = L from statistics all-reduced with ``all_reduce_sum``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

_local_only_depth = 0
_equal_batches_depth = 0


@contextmanager
def local_only() -> Iterator[None]:
    """Within this block objectives use this process's batch only (no collectives), e.g. on rank 0 alone.

    Calling an objective on one process while the others do not would otherwise wait forever.
    """
    global _local_only_depth
    _local_only_depth += 1
    try:
        yield
    finally:
        _local_only_depth -= 1


@contextmanager
def equal_batches() -> Iterator[None]:
    """Within this block every process holds a local batch of the same shape (the caller's promise, e.g. a
    sampler that gives each process exactly ``batch_size`` rows): batch sizes are then known without a
    collective, N = W * n_local, and no size is gathered or read on the host.

    Every process must enter the block for the same calls; a wrong promise gives wrong sizes."""
    global _equal_batches_depth
    _equal_batches_depth += 1
    try:
        yield
    finally:
        _equal_batches_depth -= 1


def is_distributed() -> bool:
    """True when torch.distributed is initialised with more than one process (and not in local_only)."""
    if _local_only_depth > 0:
        return False
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes W (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


class _AllReduceSum(torch.autograd.Function):
    """y = sum_k x_k on every process; backward: xbar_k = sum_j ybar_j (the adjoint)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = x.detach().clone().contiguous()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        out = grad.detach().clone().contiguous()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out


class _AllGather(torch.autograd.Function):
    """y = concat_k x_k along dim 0 on every process; backward: sum over processes, keep local rows."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, sizes: list[int]) -> Tensor:
        me = dist.get_rank()
        biggest = max(sizes)
        x = x.detach().contiguous()
        if x.shape[0] < biggest:  # unequal local batches: pad, gather, trim
            pad = x.new_zeros((biggest - x.shape[0], *x.shape[1:]))
            x = torch.cat([x, pad], dim=0)
        parts = [torch.empty_like(x) for _ in sizes]
        dist.all_gather(parts, x)
        ctx.start = sum(sizes[:me])
        ctx.stop = ctx.start + sizes[me]
        return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)], dim=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        total = grad.detach().clone().contiguous()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[ctx.start : ctx.stop], None


def broadcast_from_rank0(x: Tensor) -> Tensor:
    """x of process 0 on every process (in place; unchanged when not distributed)."""
    if is_distributed():
        dist.broadcast(x, src=0)
    return x


def all_reduce_sum(x: Tensor) -> Tensor:
    """sum_k x_k over processes, differentiable (backward is the adjoint all-reduce); identity if W = 1."""
    if not is_distributed():
        return x
    return _AllReduceSum.apply(x)


def all_reduce_min_(x: Tensor) -> Tensor:
    """x <- min_k x_k over processes, in place, not differentiable; unchanged if W = 1."""
    if is_distributed():
        dist.all_reduce(x, op=dist.ReduceOp.MIN)
    return x


def all_reduce_max_(x: Tensor) -> Tensor:
    """x <- max_k x_k over processes, in place, not differentiable; unchanged if W = 1."""
    if is_distributed():
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


def batch_sizes(n_local: int, device: torch.device | None = None) -> list[int]:
    """The local batch size n_k of every process, in rank order ([n_local] when not distributed).

    Inside ``equal_batches()`` every n_k = n_local (no collective); otherwise one all-gather and a host read
    of the W sizes."""
    if not is_distributed():
        return [n_local]
    if _equal_batches_depth > 0:
        return [int(n_local)] * dist.get_world_size()
    mine = torch.tensor([n_local], dtype=torch.long, device=device)
    parts = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, mine)
    return [int(p.item()) for p in parts]


def all_gather_with_grad(x: Tensor) -> tuple[Tensor, int]:
    """(concat_k x_k along dim 0, offset of this process's rows); gradients flow back to every x_k.

    Local batches may differ in size. Returns (x, 0) when not distributed.
    """
    if not is_distributed():
        return x, 0
    sizes = batch_sizes(x.shape[0], x.device)
    gathered = _AllGather.apply(x, sizes)
    return gathered, sum(sizes[: dist.get_rank()])


def global_batch_size(n_local: int, device: torch.device | None = None) -> int:
    """N = sum_k n_k (n_local when not distributed)."""
    return sum(batch_sizes(n_local, device))


def local_share(local_sum: Tensor, n_total: int) -> Tensor:
    """L_k = (W / N) * sum_{i local} l_i: this process's share of the mean loss (module docstring)."""
    return local_sum * (world_size() / n_total)


def global_mean(x: Tensor, n_total: int) -> Tensor:
    """Column mean over the global batch, (1/N) sum_k sum_{i in k} x_i, differentiable."""
    return all_reduce_sum(x.sum(dim=0)) / n_total


def global_cross_moment(a: Tensor, b: Tensor, n_total: int, denom: int | None = None) -> Tensor:
    """(1/denom) sum over the global batch of a_i b_i^T (d_a x d_b); denom defaults to N."""
    return all_reduce_sum(a.T @ b) / (n_total if denom is None else denom)


def gather_detached(x: Tensor) -> Tensor:
    """concat_k sg(x_k) over processes in rank order (row counts may differ); sg(x) when not distributed."""
    return all_gather_with_grad(x.detach())[0]  # the input is detached: no gradient flows


def sum_detached(x: Tensor) -> Tensor:
    """sum_k sg(x_k) over processes (all-reduce of a detached copy); a detached copy when not distributed."""
    out = x.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


class HostMax:
    """max over processes of a host integer, agreed one round late without touching a device.

    ``exchange(v)`` at round t returns round t-1's maximum (and posts v for round t); the reduction runs on
    CPU tensors over a gloo group of its own (beside NCCL on GPUs), asynchronously, so no process waits for
    its device or for the others inside a round. Every process must call ``open`` once and ``exchange`` at
    the same rounds. Not distributed: ``exchange(v)`` returns v at once."""

    def __init__(self) -> None:
        self._group: Any = None
        self._work: Any = None
        self._flag: Tensor | None = None

    def open(self) -> None:
        """Create the gloo group (a collective call: every process, at the same point)."""
        if is_distributed() and self._group is None:
            self._group = dist.new_group(backend="gloo")

    def exchange(self, value: int, again: bool = True) -> int:
        """The previous round's max over processes (0 before the first), posting ``value`` for the next
        round unless ``again`` is False or that max is non-zero (the rounds end there)."""
        if not is_distributed() or self._group is None:
            return int(value)
        agreed = self.close()
        if agreed == 0 and again:
            self._flag = torch.tensor([int(value)], dtype=torch.int64)
            self._work = dist.all_reduce(self._flag, op=dist.ReduceOp.MAX, group=self._group, async_op=True)
        return agreed

    def close(self) -> int:
        """Wait for the posted round (if any) and return its max (0 if none): the rounds are over."""
        if self._work is None or self._flag is None:
            return 0
        self._work.wait()
        agreed = int(self._flag[0])  # a CPU tensor reduced on the host: no device is waited for
        self._work, self._flag = None, None
        return agreed

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (spawned processes) without the group and the pending round: each process opens its own."""
        return {"_group": None, "_work": None, "_flag": None}


def end_process_group() -> None:
    """Destroy the default process group of this process, if any (after training: every rank calls it).

    Left to the interpreter's exit, a gloo group's teardown takes tens of seconds after an interrupted
    run; destroying it explicitly returns at once."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_from(x: Tensor, src: int) -> Tensor:
    """x of process ``src`` on every process (in place; unchanged when not distributed)."""
    if is_distributed():
        dist.broadcast(x, src=src)
    return x


def gather_to_rank0(x: Tensor) -> list[Tensor] | None:
    """[sg(x_0), ..., sg(x_{W-1})] on process 0 (row counts may differ), None on the others; [x] when
    not distributed. Only process 0 receives: W - 1 shares, not W(W - 1) as with an all-gather."""
    if not is_distributed():
        return [x.detach()]
    sizes = batch_sizes(x.shape[0], x.device)
    pad = torch.cat([x.detach(), x.new_zeros((max(sizes) - x.shape[0], *x.shape[1:]))]).contiguous()
    parts = [torch.empty_like(pad) for _ in sizes] if dist.get_rank() == 0 else None
    dist.gather(pad, parts, dst=0)
    if parts is None:
        return None
    return [p[:n] for p, n in zip(parts, sizes, strict=True)]
