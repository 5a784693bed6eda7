"""Coefficient schedules for regularizers: constant, step decay, warm-up (SPEC section 4)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypedDict

from dimcollapse.errors import ConfigError

SCHEDULES = ("constant", "step")
WARMUP_MODES = ("linear", "off")


def _check_nonneg(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value}. Give a non-negative value.")
    return value


class ScheduleOptions(TypedDict, total=False):
    """The coefficient-schedule keywords every regularizer accepts (meaning: ``CoefficientSchedule``).

    A regularizer takes them as ``**schedule: Unpack[ScheduleOptions]`` and passes them to
    ``Regularizer.__init__``; config files give them next to the regularizer's own keywords.
    """

    schedule: str
    milestones: Sequence[float]
    multipliers: Sequence[float]
    warmup_epochs: float
    off_epoch: float | None


SCHEDULE_OPTIONS: tuple[str, ...] = tuple(ScheduleOptions.__annotations__)


@dataclass
class CoefficientSchedule:
    """c(epoch) = weight * warm(epoch) * step(epoch) * [epoch < off_epoch].

    - ``schedule="constant"``: step(epoch) = 1.
    - ``schedule="step"``: step(epoch) = multipliers[i] for the last milestone i with milestones[i] <= epoch
      (1 before the first milestone); the literature (SO / SRIP) uses multipliers 1e-3, 1e-4, 1e-6.
    - warm-up: ``warmup="linear"`` ramps from 0 to 1 over ``warmup_epochs``; ``warmup="off"`` keeps the term
      switched off (c = 0) for epoch < ``warmup_epochs`` (LDReg's warm-up).
    - ``off_epoch``: from this epoch on c = 0.
    """

    weight: float
    schedule: str = "constant"
    milestones: Sequence[float] = field(default_factory=tuple)
    multipliers: Sequence[float] = field(default_factory=tuple)
    warmup_epochs: float = 0.0
    warmup: str = "linear"
    off_epoch: float | None = None

    def __post_init__(self) -> None:
        self.weight = _check_nonneg("regularizer weight (coefficient)", self.weight)
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown coefficient schedule '{self.schedule}'. Valid schedules: {', '.join(SCHEDULES)}."
            )
        if self.warmup not in WARMUP_MODES:
            raise ConfigError(
                f"unknown warm-up mode '{self.warmup}'. Valid modes: {', '.join(WARMUP_MODES)}."
            )
        self.warmup_epochs = _check_nonneg("warmup_epochs", self.warmup_epochs)
        self.milestones = tuple(_check_nonneg("schedule milestone", m) for m in self.milestones)
        self.multipliers = tuple(_check_nonneg("schedule multiplier", m) for m in self.multipliers)
        if self.schedule == "step":
            if len(self.milestones) != len(self.multipliers) or not self.milestones:
                raise ConfigError(
                    "step schedule needs milestones and multipliers of the same non-zero length, got "
                    f"{len(self.milestones)} milestones and {len(self.multipliers)} multipliers "
                    "(e.g. milestones=[20, 50, 70], multipliers=[1e-3, 1e-4, 1e-6])."
                )
            if list(self.milestones) != sorted(self.milestones):
                raise ConfigError(f"schedule milestones must be increasing, got {list(self.milestones)}.")
        elif self.milestones or self.multipliers:
            raise ConfigError(
                "milestones / multipliers are only used with schedule='step'; set schedule='step'."
            )
        if self.off_epoch is not None:
            self.off_epoch = _check_nonneg("off_epoch", self.off_epoch)

    def __call__(self, epoch: float) -> float:
        """The coefficient at (fractional) ``epoch``."""
        if self.off_epoch is not None and epoch >= self.off_epoch:
            return 0.0
        factor = 1.0
        if self.warmup_epochs > 0 and epoch < self.warmup_epochs:
            factor = 0.0 if self.warmup == "off" else max(epoch, 0.0) / self.warmup_epochs
        if self.schedule == "step":
            step = 1.0
            for milestone, mult in zip(self.milestones, self.multipliers, strict=True):
                if epoch >= milestone:
                    step = mult
            factor *= step
        return self.weight * factor
