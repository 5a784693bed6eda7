"""``Tracker``: the collapse monitor for a plain PyTorch training loop (no Lightning needed).

    tracker = Tracker(model, probe, embed=lambda m, x: m(x), every=50, out_path="runs/mine/monitor.json")
    for step in range(1, steps + 1):
        ...  # forward, backward, optimizer.step()
        tracker.step(step)           # measures at step 1 and every `every` steps
    tracker.close()                  # measures the last step if needed and writes monitor.json

Records and monitor.json are the ones ``CollapseMonitor`` writes (``recorder.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import nn

from dimcollapse.errors import ConfigError
from dimcollapse.records.monitor import MonitorRecord
from dimcollapse.records.schema import JsonObject
from dimcollapse.track.probe import Embed
from dimcollapse.track.recorder import CollapseRecorder, RecorderOptions
from dimcollapse.utils.options import int_option

if TYPE_CHECKING:
    from typing import Unpack


class Tracker:
    """Every ``every`` steps, the collapse record of ``model`` on the fixed ``probe``."""

    def __init__(
        self,
        model: nn.Module,
        probe: Any,
        embed: Embed | None = None,
        every: int = 50,
        steps_per_epoch: int | None = None,
        total_steps: int | None = None,
        log: Callable[[dict[str, float], int], None] | None = None,
        **options: Unpack[RecorderOptions],
    ) -> None:
        """``log(scalars, step)`` receives each record's numbers (e.g. a TensorBoard writer's adder);
        ``total_steps`` (when known) sets the default warm-up (``rule.default_warmup``);
        ``options``: ``recorder.RecorderOptions`` (layers, metrics, lid_k, warn_fraction, ..., out_path)."""
        if not isinstance(model, nn.Module):
            raise ConfigError(f"Tracker needs the model (an nn.Module) first, got {type(model).__name__}.")
        self.model, self.every = model, int_option(every, "every (steps between measurements)", 1)
        self.steps_per_epoch, self.log = steps_per_epoch, log
        self.recorder = CollapseRecorder(probe, embed, **options)
        self.recorder.resolve_warmup(self.every, total_steps)
        self.recorder.budget.begin()  # training time counts from here
        self._last = 0

    @property
    def history(self) -> list[MonitorRecord]:
        """Every record so far."""
        return self.recorder.history

    @property
    def should_stop(self) -> bool:
        """True once collapse persisted for ``patience`` records (with ``stop_on_collapse``)."""
        return self.recorder.should_stop

    def measure_now(self, step: int, force: bool = True) -> MonitorRecord | None:
        """Record step ``step`` regardless of ``every`` (None if that step is already recorded, or if
        ``force`` is False and the time budget ``max_share`` has no room for it)."""
        epoch = None if not self.steps_per_epoch else step / self.steps_per_epoch
        rec = self.recorder.record(self.model, int(step), epoch, force)
        if rec is not None and self.log is not None:
            from dimcollapse.track.recorder import scalar_items

            self.log(scalar_items(rec), int(step))
        return rec

    def step(self, step: int) -> MonitorRecord | None:
        """Call after optimizer step ``step`` (1-based): measures at step 1 and every ``every`` steps."""
        self._last = max(self._last, int(step))
        if step != 1 and step % self.every != 0:
            return None
        return self.measure_now(step, force=False)

    def write(self) -> None:
        """Write monitor.json (atomically) when ``out_path`` is set."""
        self.recorder.write(self.every)

    def close(self) -> None:
        """Measure the last step seen (if not yet) and write monitor.json."""
        if self._last:
            self.measure_now(self._last)
        self.write()

    def summary(self) -> JsonObject:
        """The monitor.json content."""
        return self.recorder.summary(self.every)

    def verdict(self) -> str:
        """One line, 'collapsing: yes/no (why)' (``track.verdict.collapse_verdict`` of the summary)."""
        return self.recorder.verdict()


__all__ = ["Tracker"]
