"""Sub-vector projectors: random sub-vector (DC appendix) and constant sub-vector (LL table 1)."""

from __future__ import annotations

import math

import torch
from torch import nn

from dimcollapse.errors import ConfigError
from dimcollapse.models.projectors.checks import check_d0, check_dim, check_input
from dimcollapse.registry import register

CONSTANTS = {"zero": lambda d: 0.0, "inv_sqrt_d": lambda d: 1.0 / math.sqrt(d), "one": lambda d: 1.0}


@register("projector", "random_subvector")
class RandomSubvectorProjector(nn.Module):
    """z = m * r with m a 0/1 mask of d0 ones at random positions, drawn anew on each training forward.

    In eval mode the mask is a fixed one drawn at construction (``eval_mask``). Output keeps D dims (the
    D - d0 unselected ones are 0), so z1 . z2 only sees the d0 shared dims. Forward all views of a step
    in ONE call, or they get different masks.
    """

    eval_mask: torch.Tensor
    last_mask: torch.Tensor

    def __init__(self, in_dim: int, d0: int, seed: int = 0) -> None:
        super().__init__()
        self.in_dim = check_dim("random_subvector", in_dim, "in_dim")
        self.d0 = check_d0("random_subvector", d0, self.in_dim)
        self.out_dim = self.in_dim
        self.generator = torch.Generator().manual_seed(int(seed))
        self.register_buffer("eval_mask", self._draw())
        self.register_buffer("last_mask", self.eval_mask.clone(), persistent=False)

    def _draw(self) -> torch.Tensor:
        idx = torch.randperm(self.in_dim, generator=self.generator)[: self.d0]
        mask = torch.zeros(self.in_dim)
        mask[idx] = 1.0
        return mask

    def get_extra_state(self) -> dict[str, torch.Tensor]:
        """Save the mask generator's state in the state dict so a resumed run draws the same masks."""
        return {"generator_state": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the mask generator's state from a state dict."""
        self.generator.set_state(state["generator_state"])

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """z = m r, m drawn anew (training) or fixed (eval)."""
        check_input("random_subvector", r, self.in_dim)
        mask = self._draw().to(r.device) if self.training else self.eval_mask
        self.last_mask = mask
        return r * mask.to(r.dtype)


def resolve_constant(k: float | str, in_dim: int) -> float:
    """Constant k: a float, or 'zero' -> 0, 'inv_sqrt_d' -> 1/sqrt(D), 'one' -> 1."""
    if isinstance(k, str):
        if k not in CONSTANTS:
            raise ConfigError(
                f"projector constant_subvector: unknown k '{k}'. Valid: a float, {', '.join(CONSTANTS)}."
            )
        return CONSTANTS[k](in_dim)
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k):
        raise ConfigError(f"projector constant_subvector: k must be a finite float or a name, got {k!r}.")
    return float(k)


@register("projector", "constant_subvector")
class ConstantSubvectorProjector(nn.Module):
    """z = (r_1, ..., r_d0, k, ..., k): the first d0 dims as is, the other D - d0 set to k (LL table 1)."""

    def __init__(self, in_dim: int, d0: int, k: float | str = "zero") -> None:
        super().__init__()
        self.in_dim = check_dim("constant_subvector", in_dim, "in_dim")
        self.d0 = check_d0("constant_subvector", d0, self.in_dim)
        self.k = resolve_constant(k, self.in_dim)
        self.out_dim = self.in_dim

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """z = concat(r[:, :d0], k 1_{D - d0})."""
        check_input("constant_subvector", r, self.in_dim)
        rest = r.new_full((r.shape[0], self.in_dim - self.d0), self.k)
        return torch.cat([r[:, : self.d0], rest], dim=1)
