"""A FIFO queue of detached embeddings (MoCo's keys, NNCLR's support set, SwAV's and ReSSL's queues).

The rows are buffers of the objective, so they are saved in checkpoints (a resumed run continues with the
same queue). Under DDP ``push`` gathers the rows of every process (rank order) first, so all processes hold
the same queue, equal to the queue of one process that saw the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.utils.distributed import all_gather_with_grad


class FeatureQueue(nn.Module):
    """``size`` rows of dimension ``dim``; ``filled`` counts rows written so far (capped at size).

    ``init="random"``: rows start as random unit vectors and count as filled (MoCo, NNCLR, ReSSL);
    ``init="empty"``: rows start at zero and only the written rows are ``values()`` (SwAV).
    """

    def __init__(self, size: int, dim: int, init: str = "random") -> None:
        super().__init__()
        for key, value in (("queue_size", size), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"queue: {key} must be a positive integer, got {value!r}.")
        if init not in ("random", "empty"):
            raise ConfigError(f"queue: init must be 'random' or 'empty', got {init!r}.")
        rows = F.normalize(torch.randn(size, dim), dim=1) if init == "random" else torch.zeros(size, dim)
        self.rows: Tensor
        self.ptr: Tensor
        self.filled: Tensor
        self.register_buffer("rows", rows)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.tensor(size if init == "random" else 0, dtype=torch.long))

    @property
    def size(self) -> int:
        """Capacity (number of rows)."""
        return int(self.rows.shape[0])

    def is_full(self) -> bool:
        """True once every row holds an embedding."""
        return int(self.filled) >= self.size

    def values(self) -> Tensor:
        """The filled rows (a detached copy), oldest slot first in storage order."""
        return self.rows[: int(self.filled)].detach().clone()

    @torch.no_grad()
    def push(self, x: Tensor) -> None:
        """Write the rows of x (of every process, rank order) at the pointer, wrapping around."""
        if x.dim() != 2 or x.shape[1] != self.rows.shape[1]:
            raise InputError(
                f"queue: expected embeddings [N, {self.rows.shape[1]}], got {tuple(x.shape)}; the queue's "
                "dim must be the projector's out_dim."
            )
        x = all_gather_with_grad(x.detach())[0].to(self.rows.dtype)
        if x.shape[0] > self.size:  # only the newest rows fit
            x = x[-self.size :]
        idx = (int(self.ptr) + torch.arange(x.shape[0], device=self.rows.device)) % self.size
        self.rows.index_copy_(0, idx, x)
        self.ptr.fill_((int(self.ptr) + x.shape[0]) % self.size)
        self.filled.fill_(min(self.size, int(self.filled) + x.shape[0]))
