"""The monitor's time budget: a share of the training time it may spend measuring.

A due measurement runs when ``spent + last_cost <= max_share x training_time`` (training time: the wall
time since the clock started, minus the time spent measuring), so the cadence adapts to the measured
cost of a measurement against the measured speed of training: a slow measurement (many weight layers
on a CPU) is taken less often, a cheap one at every due step. The first measurement always runs (the
baseline), and so does one asked for explicitly (the final state). ``max_share=None``: no budget.
"""

from __future__ import annotations

import math
import time

from dimcollapse.errors import ConfigError


class TimeBudget:
    """Decides whether a due measurement fits in ``max_share`` of the training time so far."""

    def __init__(self, max_share: float | None = None) -> None:
        """``max_share`` in (0, 1], or None for no budget (every due step is measured)."""
        if max_share is not None:
            if isinstance(max_share, bool) or not isinstance(max_share, (int, float)):
                raise ConfigError(f"max_share must be a number in (0, 1] or None, got {max_share!r}.")
            if not (0.0 < float(max_share) <= 1.0) or math.isnan(max_share):
                raise ConfigError(f"max_share must be in (0, 1] (e.g. 0.01 for 1%), got {max_share!r}.")
        self.max_share = None if max_share is None else float(max_share)
        self.start: float | None = None
        self.spent, self.last_cost, self.skipped, self.taken = 0.0, 0.0, 0, 0

    def begin(self, now: float | None = None) -> None:
        """Start the training clock (once; a resumed run keeps counting from here)."""
        if self.start is None:
            self.start = time.perf_counter() if now is None else now

    def training_time(self, now: float | None = None) -> float:
        """Wall seconds since ``begin`` minus the seconds spent measuring."""
        if self.start is None:
            return 0.0
        now = time.perf_counter() if now is None else now
        return max(0.0, now - self.start - self.spent)

    def allows(self, now: float | None = None) -> bool:
        """True when the next measurement keeps the spent time within the share (always the first)."""
        if self.max_share is None or self.taken == 0 or self.start is None:
            return True
        ok = self.spent + self.last_cost <= self.max_share * self.training_time(now)
        if not ok:
            self.skipped += 1
        return ok

    def charge(self, seconds: float) -> None:
        """Account one measurement's cost."""
        self.spent += float(seconds)
        self.last_cost = float(seconds)
        self.taken += 1

    def share(self, now: float | None = None) -> float | None:
        """Spent time / training time so far (None before any training time)."""
        train = self.training_time(now)
        return self.spent / train if train > 0 else None


__all__ = ["TimeBudget"]
