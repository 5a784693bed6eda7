"""Argument and input checks shared by the projectors."""

from __future__ import annotations

import torch

from dimcollapse.errors import ConfigError, InputError


def check_dim(name: str, value: object, what: str = "a dimension") -> int:
    """Return ``value`` as an int >= 1, else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"projector {name}: {what} must be an integer >= 1, got {value!r}.")
    return value


def check_d0(name: str, d0: object, in_dim: int) -> int:
    """Return d0 if 1 <= d0 <= D (= in_dim), else raise ConfigError."""
    if isinstance(d0, bool) or not isinstance(d0, int):
        raise ConfigError(f"projector {name}: d0 must be an integer in [1, {in_dim}], got {d0!r}.")
    if d0 < 1 or d0 > in_dim:
        raise ConfigError(
            f"projector {name}: d0 = {d0} is outside [1, D = {in_dim}] (D is the backbone's representation "
            f"size); choose d0 <= {in_dim}."
        )
    return d0


def check_input(name: str, r: torch.Tensor, in_dim: int) -> None:
    """Raise InputError unless r has shape [N, in_dim]."""
    if r.dim() != 2 or r.shape[1] != in_dim:
        raise InputError(
            f"projector {name} expects representations of shape [N, {in_dim}], got {list(r.shape)}; "
            "build it with in_dim equal to the backbone's out_dim."
        )
