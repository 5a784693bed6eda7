"""Common base of all regularizers: a pure term (no weight, schedule or clock) and its logged statistics."""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor, nn


class Regularizer(nn.Module):
    """Base class: ``forward`` returns the raw term; the training module weights it by c_j(step).

    Class metadata read by the run's schedules (``training/schedules.py``), never by the term itself:
    ``default_weight`` (the coefficient when a config entry gives none; None: the entry must give one),
    ``default_warmup`` ("linear" ramp, or "off": the term is held at 0 during warm-up) and
    ``skip_when_off`` (the module does not compute the term while its coefficient is 0).
    ``last_stats`` holds detached tensors of the last call (no host sync), for logging.
    """

    target: ClassVar[Literal["weights", "features"]]
    default_weight: ClassVar[float | None] = None
    default_warmup: ClassVar[str] = "linear"
    skip_when_off: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.last_stats: dict[str, Tensor] = {}

    def record(self, raw: Tensor, **stats: Tensor) -> Tensor:
        """Return ``raw``; ``last_stats`` keeps it and ``stats`` detached (tensors: no host sync)."""
        self.last_stats = {"raw": raw.detach(), **{k: v.detach() for k, v in stats.items()}}
        return raw
