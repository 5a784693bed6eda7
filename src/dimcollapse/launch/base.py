"""The executor interface: submit runs, poll their states, cancel them; and what a run ended as."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

from dimcollapse.launch.task import RunTask

QUEUED, RUNNING, REQUEUED, DONE, FAILED = "queued", "running", "requeued", "done", "failed"
FINAL = (DONE, FAILED)


@dataclass
class Outcome:
    """How a launched run ended (``state`` done or failed) or stands; ``error`` is the failure in one line."""

    run_id: str
    state: str
    job_id: str = ""
    error: str = ""
    exit_code: int | None = None
    exception: BaseException | None = None  # the inline executor's own exception (re-raised on fail-fast)


@dataclass
class Job:
    """A submitted run: its executor's job id (e.g. SLURM ``<array>_<index>``) and array index."""

    run_id: str
    job_id: str
    array_index: int | None = None
    log_file: Path | None = None


class Executor(abc.ABC):
    """Runs tasks, each its own ``dimcollapse train`` process (the ``inline`` executor: a function)."""

    name: str = ""
    poll_interval_s: float = 0.2

    @abc.abstractmethod
    def submit(self, tasks: list[RunTask]) -> list[Job]:
        """Start (or queue) ``tasks``; return their jobs in the same order."""

    @abc.abstractmethod
    def poll(self) -> list[Outcome]:
        """Advance the queue and return the runs that ended since the last call."""

    @abc.abstractmethod
    def pending(self) -> int:
        """How many submitted runs have not ended."""

    def cancel(self) -> None:  # noqa: B027 (optional: most executors have nothing to stop)
        """Stop what this executor started (local runs get SIGTERM and save a checkpoint)."""

    def adopt(self, job_id: str, task: RunTask) -> bool:
        """Follow ``job_id``, submitted by an earlier study process, if it still runs (default: never)."""
        return False

    def running(self) -> list[str]:
        """Ids of the runs that are running now (for progress lines)."""
        return []
