"""What runs inside each SLURM task: the run's ``dimcollapse train`` in this very process.

In-process (not a child process) so that SLURM's signals (the ``--signal=USR1@s`` warning, SIGTERM of a
requeue or preemption) reach the training itself in every task; submitit's own preemption handler
listens on USR2, which the launcher never asks SLURM to send. The resume decision is taken when the
task starts, so a requeued job continues from its ``last.ckpt`` with its own config.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dimcollapse.launch.task import (
    ENV_ARRAY_INDEX,
    ENV_EXECUTOR,
    ENV_JOB_ID,
    ENV_REQUEUES,
    is_done,
    train_argv,
)

Entry = Callable[[list[str]], int]


def slurm_job_id(env: dict[str, str] | os._Environ[str]) -> str:
    """``<array job>_<index>`` for an array task, else ``SLURM_JOB_ID`` ('' outside SLURM)."""
    array, index = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{index}" if array and index else env.get("SLURM_JOB_ID", "")


@dataclass(frozen=True)
class TrainInTask:
    """A picklable callable: ``entry(["train", config, "--out", dir, (--resume)])`` in a SLURM task."""

    entry: Entry
    config_file: str
    out_dir: str

    def __call__(self) -> int:
        """Train the run (resuming its interrupted folder); raise when the training exits non-zero."""
        os.environ[ENV_EXECUTOR] = "slurm"
        os.environ[ENV_JOB_ID] = slurm_job_id(os.environ)
        os.environ[ENV_ARRAY_INDEX] = os.environ.get("SLURM_ARRAY_TASK_ID", "")
        os.environ[ENV_REQUEUES] = os.environ.get("SLURM_RESTART_COUNT", "0")
        if is_done(Path(self.out_dir)):  # requeued after the run wrote its results (a late signal)
            print(f"run in {self.out_dir} already finished; nothing to do", flush=True)
            return 0
        code = self.entry(train_argv(Path(self.config_file), Path(self.out_dir)))
        if code != 0:
            raise RuntimeError(f"dimcollapse train exited with status {code} (see this job's log)")
        return code
