"""The common shape of every objective: class attributes of the contract, input checks, last_stats."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dimcollapse.errors import ConfigError, InputError


class Objective(nn.Module):
    """Base class: ``forward(z1, z2) -> scalar``; ``last_stats`` holds the loss components for logging
    as detached tensors (no host sync). A pure term: no clock, no schedule; scheduled values (DINO's
    teacher temperature) arrive as keyword arguments from ``training/schedules.py``."""

    uses_momentum_target: ClassVar[bool] = False
    needs_dim: ClassVar[bool] = False
    multi_view: ClassVar[bool] = False  # True: called once per step as forward_views(zs, ts), all views
    name: ClassVar[str] = "objective"
    # EMA (base, final) momentum when the run's ``ema`` block gives none (read by the schedules only)
    default_momentum: ClassVar[tuple[float, float]] = (0.99, 1.0)
    # the registered training step (training/steps/) when the config's ``step`` names none
    default_step: ClassVar[str] = "views"

    def __init__(self) -> None:
        super().__init__()
        self.last_stats: dict[str, Tensor] = {}

    def embedding_slice(self) -> int | None:
        """d0 when the loss reads only the leading slice z[:, :d0] (DirectCLR), None when it reads all of z;
        the run checks d0 against the embedding size and also evaluates the slice."""
        return None

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, EMA copy) pairs the objective owns besides the target network (DINO: prototypes)."""
        return []

    def forward_views(self, zs: list[Tensor], ts: list[Tensor] | None = None) -> Tensor:
        """All views at once (multi_view objectives): global views first, ``ts`` the targets of those."""
        raise ConfigError(f"{self.name}: takes two views at a time, not forward_views.")

    def check_pair(self, z1: Tensor, z2: Tensor, min_rows: int = 1) -> None:
        """Raise InputError unless z1, z2 are 2-D, of equal shape, with at least ``min_rows`` rows."""
        for label, z in (("z1", z1), ("z2", z2)):
            if z.dim() != 2:
                raise InputError(
                    f"{self.name}: {label} must be a 2-D batch of embeddings [N, d], got shape "
                    f"{tuple(z.shape)}; flatten or project the features first."
                )
        if z1.shape != z2.shape:
            raise InputError(
                f"{self.name}: the two views' embeddings must have the same shape, got {tuple(z1.shape)} "
                f"and {tuple(z2.shape)}; pass embeddings of the same images under two augmentations."
            )
        if z1.shape[0] < min_rows:
            raise InputError(
                f"{self.name}: needs a batch of at least {min_rows} rows, got {z1.shape[0]}; "
                "increase the batch size."
            )


def full_precision(z: Tensor) -> Tensor:
    """z in float32 if it is a half type (losses are computed in >= float32 under mixed precision)."""
    return z.float() if z.dtype in (torch.float16, torch.bfloat16) else z


def normalize_rows(z: Tensor) -> Tensor:
    """z_i / max(||z_i||, 1e-12), computed in at least float32."""
    return F.normalize(full_precision(z), dim=1)


def check_positive(owner: str, **values: float) -> None:
    """Raise ConfigError naming each keyword that is not a finite positive number."""
    for key, value in values.items():
        if not (isinstance(value, int | float) and value > 0 and value != float("inf")):
            raise ConfigError(f"{owner}: {key} must be a positive number, got {value!r}.")


def check_nonnegative(owner: str, **values: float) -> None:
    """Raise ConfigError naming each keyword that is not a finite number >= 0."""
    for key, value in values.items():
        if not (isinstance(value, int | float) and value >= 0 and value != float("inf")):
            raise ConfigError(f"{owner}: {key} must be a number >= 0, got {value!r}.")
