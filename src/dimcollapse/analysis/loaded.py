"""A loaded model with where it came from, how it embeds by default and the inputs it was trained on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass
class LoadedModel:
    """A model in eval mode on the CPU with where it came from (``kind``: lightning, state_dict, ...).

    ``forward(module, x)`` is how the model embeds a batch when the user names nothing (``None``:
    ``module(x)``); ``preprocess`` the input settings the model was trained with (``image_size``,
    ``channels``, ``mean``, ``std``), used unless the user overrides them.
    """

    module: nn.Module
    kind: str
    source: str
    info: dict[str, Any] = field(default_factory=dict)
    forward: Callable[[nn.Module, Any], Any] | None = None
    preprocess: dict[str, Any] = field(default_factory=dict)


__all__ = ["LoadedModel"]
