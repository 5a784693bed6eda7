"""SIGTERM / SIGINT / SIGUSR1 during training: every rank stops after the same step, rank 0 saves a
resumable checkpoint and, under SLURM, requeues the job.

A handler only records the signal in its process. At every optimizer-step boundary the ranks all-reduce
(max) that one integer on the host, one boundary late (``utils/distributed.py:HostMax``: a CPU gloo
reduction posted at step s and read at s + 1, so no step waits for the device or the other ranks), so a
signal that reached any one rank (the launcher alone, one SLURM task, all of them) stops all ranks after
the same step (one step later under several processes): every rank takes part in saving ``last.ckpt``
(Lightning's save is collective; rank 0 writes it, unless the state is non-finite: then the previous good
checkpoint stays),
rank 0 requeues the SLURM job when there is one (``cluster.requeue_job``), and each rank raises
``RunInterrupted``: exit status 128 + signal on rank 0 (143 SIGTERM, 130 SIGINT, 138 SIGUSR1), 0 on the
other ranks (Lightning's launcher kills every rank when a child exits non-zero). A signal that arrives
after training (during the final evaluation) stops at once: ``last.ckpt`` already holds the final state.
A second SIGINT interrupts at once.
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
from dimcollapse.training.cluster import JobInfo, requeue_job, requeue_wanted
from dimcollapse.utils.distributed import HostMax

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class GracefulStop(L.Callback):
    """Turns a stop signal on any rank into one agreed stop: checkpoint, requeue, ``RunInterrupted``."""

    def __init__(self, last: Path, out: Path, job: JobInfo) -> None:
        self.last, self.out, self.job = last, out, job
        self.received: int | None = None
        self.after_training = False  # set after fit: a signal then stops at once
        self.previous: dict[int, Any] = {}
        self._checked_step = -1
        self.agreement = HostMax()  # max over ranks of the received signal number, one boundary late

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl+C: stop now
        self.received = signum
        if self.after_training:
            self.after_training = False  # one stop only
            raise self._interrupted(signum, "during the final evaluation", rank=0)

    def install(self) -> None:
        """Install the handlers (remembering the previous ones the first time); main thread only."""
        if threading.current_thread() is not threading.main_thread():
            return
        for s in SIGNALS:
            current = signal.signal(s, self._handler)
            self.previous.setdefault(int(s), current)

    def restore(self) -> None:
        """Put the handlers back that were installed before ``install``."""
        if threading.current_thread() is not threading.main_thread():
            return
        for s, h in self.previous.items():
            if h is not None:
                signal.signal(s, h)
        self.previous = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Install again (Lightning's trainer set its own SIGTERM handler when fit started)."""
        self._checked_step = int(trainer.global_step)
        self.agreement.open()
        self.install()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Finish the last posted agreement round (every rank posted it)."""
        self.agreement.close()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        """At an optimizer-step boundary: agree on a stop; then save, requeue (rank 0) and stop."""
        step = int(trainer.global_step)
        if step == self._checked_step:  # inside a gradient accumulation window
            return
        self._checked_step = step
        last = step >= int(trainer.max_steps)  # the last step: training ends normally
        signum = self.agreement.exchange(int(self.received or 0), again=not last)
        if signum == 0 or last:
            return
        bad = save_if_finite(trainer, self.last)  # every rank calls it (Lightning's save is collective)
        if not bad:
            saved = f"checkpoint of step {step} saved to '{self.last}'"
        else:
            saved = f"the state holds NaN/Inf ({describe_bad(bad)}), so the last good checkpoint was kept"
        rank = int(trainer.global_rank)
        if rank == 0 and requeue_wanted():
            saved += f"; {requeue_job(self.job)}"
        world = int(trainer.world_size)
        where = f"at step {step}" + (f" (all {world} ranks stopped after this step)" if world > 1 else "")
        raise self._interrupted(signum, where, rank, saved)

    def _interrupted(self, signum: int, where: str, rank: int, saved: str = "") -> RunInterrupted:
        name = signal.Signals(signum).name
        if rank != 0:
            return RunInterrupted(f"rank {rank} stopped {where} with the other ranks on {name}", 0)
        if not saved:
            saved = f"'{self.last}' holds the final training state"
            if requeue_wanted():
                saved += f"; {requeue_job(self.job)}"
        return RunInterrupted(
            f"training interrupted by {name} {where}; {saved}. To continue, rerun the same command "
            f"(same config, --out {self.out}): it resumes from the checkpoint by itself.",
            128 + int(signum),
            requeued="; requeued SLURM job" in saved,
        )
