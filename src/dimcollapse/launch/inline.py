"""The ``inline`` executor: a caller's function trains each run in this process, one after another.

Only for the study's own bookkeeping tests and API users who pass ``train_fn``; the CLI never uses it
(a run of the CLI is always its own process).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dimcollapse.errors import DimCollapseError, DiskFullError, RunInterrupted, one_line
from dimcollapse.launch.base import DONE, FAILED, Executor, Job, Outcome
from dimcollapse.launch.task import LAST, RunTask, clear_unstarted

InlineFn = Callable[[RunTask, bool], Any]


class InlineExecutor(Executor):
    """Calls ``fn(task, resume)`` for each task in turn; an exception of the function is a failed run."""

    name = "inline"
    poll_interval_s = 0.0

    def __init__(self, fn: InlineFn) -> None:
        self.fn = fn
        self.queue: list[RunTask] = []

    def submit(self, tasks: list[RunTask]) -> list[Job]:
        """Queue ``tasks`` (each runs at a later ``poll``)."""
        self.queue.extend(tasks)
        return [Job(t.run_id, f"inline-{i}") for i, t in enumerate(tasks)]

    def pending(self) -> int:
        """Tasks not run yet."""
        return len(self.queue)

    def poll(self) -> list[Outcome]:
        """Run the next task to its end."""
        if not self.queue:
            return []
        task = self.queue.pop(0)
        resume = (task.out_dir / LAST).is_file()
        if not resume:
            clear_unstarted(task.out_dir)
        try:
            self.fn(task, resume)
        except (DiskFullError, RunInterrupted):
            raise
        except Exception as e:  # one run's failure (corrupt checkpoint, NaN, a bug) must not end the study
            reason = one_line(e, 500)
            reason = reason if isinstance(e, DimCollapseError) else f"{type(e).__name__}: {reason}"
            return [Outcome(task.run_id, FAILED, error=reason, exception=e)]
        return [Outcome(task.run_id, DONE, exit_code=0)]

    def running(self) -> list[str]:
        """Nothing runs between polls."""
        return []


def resumed(out_dir: Path) -> bool:
    """True when ``out_dir`` holds an interrupted run's last.ckpt."""
    return (out_dir / LAST).is_file()
