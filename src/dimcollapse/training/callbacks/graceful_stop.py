"""SIGTERM / SIGINT during training: finish the current step, save a resumable checkpoint, stop.

The handlers only set a flag; the next ``on_train_batch_end`` saves ``last.ckpt`` (unless the state is
non-finite: then the previous good checkpoint stays) and raises ``RunInterrupted`` with exit status
128 + signal (143 for SIGTERM, 130 for SIGINT). A second SIGINT interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L

from dimcollapse.errors import RunInterrupted
from dimcollapse.training.checkpoint import describe_bad, save_if_finite

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop(L.Callback):
    """Turns SIGTERM / SIGINT into a checkpoint at the end of the running step and a RunInterrupted."""

    def __init__(self, last: Path, out: Path) -> None:
        self.last, self.out = last, out
        self.received: int | None = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl+C: stop now
        self.received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Install the handlers (after Lightning's own; the run restores the previous ones after fit)."""
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                signal.signal(s, self._handler)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        """After a signal: save the state of the finished step and stop with RunInterrupted."""
        if self.received is None:
            return
        name = signal.Signals(self.received).name
        step = int(trainer.global_step)
        bad = save_if_finite(trainer, self.last)  # every process calls it (Lightning's save is collective)
        saved = (
            f"checkpoint of step {step} saved to '{self.last}'"
            if not bad
            else f"the state holds NaN/Inf ({describe_bad(bad)}), so the last good checkpoint '{self.last}' "
            "was kept"
        )
        raise RunInterrupted(
            f"training interrupted by {name} at step {step}; {saved}. To continue, rerun the same command "
            f"with --resume (same config, --out {self.out}).",
            128 + int(self.received),
        )
