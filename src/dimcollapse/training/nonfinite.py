"""A device-side record of the first non-finite loss of a run: updated every step without a host sync,
read (one sync) at logging steps, before every checkpoint and at the end of training. Under several
processes the read agrees over ranks (two small all-reduces), so every rank stops at the same step
instead of one rank raising while the others wait at the next collective."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dimcollapse.utils.distributed import all_reduce_max_, all_reduce_min_, is_distributed


class NonFiniteFlag:
    """first_step: the first global step at which one of ``n_terms`` terms was NaN/Inf (-1: none yet);
    which: the terms that were non-finite at that step. Both stay on the terms' device."""

    def __init__(self, n_terms: int) -> None:
        self.n_terms = int(n_terms)
        self.first_step: Tensor | None = None
        self.which: Tensor | None = None

    @torch.no_grad()
    def update(self, step: int, terms: Sequence[Tensor]) -> None:
        """Record ``step`` and the non-finite terms if this is the first step with one (no host sync)."""
        bad = ~torch.isfinite(torch.stack([t.detach().float().reshape(()) for t in terms]))
        if self.first_step is None or self.which is None:
            self.first_step = torch.full((), -1, dtype=torch.long, device=bad.device)
            self.which = torch.zeros_like(bad)
        new = (self.first_step < 0) & bad.any()
        self.first_step = torch.where(new, torch.full_like(self.first_step, step), self.first_step)
        self.which = torch.where(new, bad, self.which)

    def first_bad(self) -> tuple[int, list[bool]] | None:
        """(step, per-term flags) of the first non-finite step on any rank, or None (one sync)."""
        if self.first_step is None or self.which is None:
            return None
        first, which = self.first_step, self.which
        if is_distributed():
            first, which = _agree_over_ranks(first, which)
        step = int(first)
        return None if step < 0 else (step, [bool(b) for b in which.tolist()])


def _agree_over_ranks(first: Tensor, which: Tensor) -> tuple[Tensor, Tensor]:
    """step = min over ranks of the first bad step (-1: none); which = OR of the flags of the ranks at it."""
    never = torch.iinfo(torch.long).max
    step = torch.where(first < 0, torch.full_like(first, never), first)
    all_reduce_min_(step)
    flags = torch.where(first == step, which.long(), torch.zeros_like(which, dtype=torch.long))
    all_reduce_max_(flags)
    return torch.where(step == never, torch.full_like(step, -1), step), flags.bool()
