"""RUN_DIR/progress.json: where a run is, for ``dimcollapse study status`` (steps done, an ETA).

Written atomically by rank 0 when the run starts, every ``every`` optimizer steps, and at the end:

    {"state": "running" | "done" | "failed" | "interrupted", "step", "max_steps", "started", "updated",
     "session_started", "session_start_step", "job_id", "array_job_id", "array_task_id", "requeue_count",
     "requeued", "executor", "host", "pid", ["error"]}

``started`` is the first start of the run (kept across resumes and requeues); ``session_*`` are this
process's start, so steps per second are (step - session_start_step) / (updated - session_started).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import lightning as L

from dimcollapse.errors import RunInterrupted, one_line
from dimcollapse.training.cluster import JobInfo
from dimcollapse.utils.atomic import atomic_write_json

STATES = ("running", "done", "failed", "interrupted")


def utc_now() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_progress(path: Path) -> dict[str, Any] | None:
    """The progress record in ``path`` (None when missing or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class ProgressWriter(L.Callback):
    """Keeps ``path`` (progress.json) up to date from rank 0; ``enabled=False`` on the other ranks."""

    def __init__(self, path: Path, job: JobInfo, max_steps: int, every: int, enabled: bool = True) -> None:
        self.path, self.job, self.max_steps, self.every = path, job, int(max_steps), max(1, int(every))
        self.enabled = enabled
        self.step = 0
        previous = read_progress(path) if enabled else None
        now = utc_now()
        self.started = str(previous.get("started", now)) if previous else now
        self.session_started = now
        self.session_start_step = 0

    def write(self, state: str, step: int | None = None, **extra: Any) -> None:
        """Write the record with ``state`` (one of STATES) at ``step`` (default: the last seen)."""
        if not self.enabled:
            return
        if step is not None:
            self.step = int(step)
        record = {
            "state": state,
            "step": self.step,
            "max_steps": self.max_steps,
            "started": self.started,
            "updated": utc_now(),
            "session_started": self.session_started,
            "session_start_step": self.session_start_step,
            "job_id": self.job.job_id,
            "array_job_id": self.job.slurm_array_job_id,
            "array_task_id": self.job.slurm_array_task_id,
            "requeue_count": self.job.requeue_count,
            "requeued": False,
            "executor": self.job.executor,
            "host": self.job.host,
            "pid": os.getpid(),
            **extra,
        }
        atomic_write_json(self.path, record)

    def begin(self, step: int) -> None:
        """The run (or this session of it) starts at ``step``."""
        self.session_start_step = int(step)
        self.write("running", step)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        """Every ``every`` optimizer steps: state running at the current step."""
        step = int(trainer.global_step)
        if step != self.step and step % self.every == 0:
            self.write("running", step)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """Training stopped: interrupted (a stop signal) or failed (anything else)."""
        self.stopped(exception, int(trainer.global_step))

    def stopped(self, exception: BaseException, step: int | None = None) -> None:
        """Record why the run stopped (called from the hook above and for errors outside fit)."""
        if isinstance(exception, RunInterrupted):
            self.write("interrupted", step, requeued=exception.requeued)
        else:
            self.write("failed", step, error=one_line(exception, 300) or type(exception).__name__)
