"""Common base of all regularizers: coefficient schedule, progress, logged statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from torch import Tensor, nn

from dimcollapse.regularizers.schedule import SCHEDULE_OPTIONS, CoefficientSchedule


class Regularizer(nn.Module):
    """Base class: term = coefficient(epoch) * raw term; ``last_stats`` holds the raw and weighted values.

    The schedule keywords are declared here once; subclasses take them as
    ``**schedule: Unpack[ScheduleOptions]`` and call ``super().__init__(weight, **schedule)``.
    """

    target: ClassVar[Literal["weights", "features"]]
    default_warmup: ClassVar[str] = "linear"
    # keywords a subclass receives through ``**schedule`` (the registry checks them by name)
    keyword_options: ClassVar[tuple[str, ...]] = SCHEDULE_OPTIONS

    def __init__(
        self,
        weight: float,
        schedule: str = "constant",
        milestones: Sequence[float] = (),
        multipliers: Sequence[float] = (),
        warmup_epochs: float = 0.0,
        off_epoch: float | None = None,
    ) -> None:
        super().__init__()
        self.schedule = CoefficientSchedule(
            weight=weight,
            schedule=schedule,
            milestones=tuple(milestones),
            multipliers=tuple(multipliers),
            warmup_epochs=warmup_epochs,
            warmup=self.default_warmup,
            off_epoch=off_epoch,
        )
        self.epoch = 0.0
        self.last_stats: dict[str, float] = {}

    def set_progress(self, epoch: float) -> None:
        """Record the (fractional) epoch that the coefficient schedule reads."""
        self.epoch = float(epoch)

    def coefficient(self) -> float:
        """The current coefficient c(epoch) (already includes warm-up and decay)."""
        return self.schedule(self.epoch)

    def weighted(self, raw: Tensor, **stats: float) -> Tensor:
        """c(epoch) * raw; ``last_stats`` records raw, value = c * raw, the extra ``stats`` and c."""
        coef = self.coefficient()
        value = float(raw.detach())
        self.last_stats = {"raw": value, "value": coef * value, **stats, "coefficient": coef}
        return raw * coef

    def extra_repr(self) -> str:
        return f"coefficient={self.coefficient():.3g}, epoch={self.epoch:g}"
