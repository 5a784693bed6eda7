"""Where a training process runs: its launch rank, the SLURM job it belongs to, the executor that
started it, and the SLURM requeue.

    launch_rank()          # 0 for the process that owns the run folder (lock, config.yaml, progress.json)
    job_info()             # executor, host, SLURM job / array ids, requeue count (for the run record)
    requeue_job()          # ``scontrol requeue <job>`` of the SLURM job this process runs in

The launch rank is read from the environment before any process group exists: Lightning's re-executed
DDP ranks carry LOCAL_RANK / NODE_RANK, torchrun's carry RANK, SLURM tasks carry SLURM_PROCID.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

EXECUTORS = ("local", "slurm", "none")


def _int_env(name: str, default: int = 0) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


def under_slurm_tasks() -> bool:
    """True when this process is one of several SLURM tasks of a job step (srun --ntasks-per-node > 1 or
    several nodes): SLURM then sets the ranks (SLURM_PROCID)."""
    return bool(os.environ.get("SLURM_JOB_ID")) and _int_env("SLURM_NTASKS", 1) > 1


def launch_rank() -> int:
    """This process's global rank as its launcher set it (0 when nothing was launched around it).

    SLURM tasks: SLURM_PROCID; torchrun: RANK; Lightning's re-executed ranks: non-zero LOCAL_RANK or
    NODE_RANK (Lightning sets both to 0 in the process it started from)."""
    if under_slurm_tasks():
        return _int_env("SLURM_PROCID")
    if os.environ.get("RANK"):
        return _int_env("RANK")
    return max(_int_env("LOCAL_RANK"), _int_env("NODE_RANK"))


def cluster_plugins() -> list[Any]:
    """Lightning plugins for this environment: under SLURM, its environment without Lightning's own
    SIGUSR1 requeue (``callbacks/graceful_stop.py`` agrees on the stop across ranks and requeues)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def multi_node_launcher() -> str | None:
    """The launcher that can start this run's other nodes ('slurm', 'torchrun', 'env'), or None."""
    if os.environ.get("SLURM_JOB_ID") and _int_env("SLURM_NNODES", 1) > 1:
        return "slurm"
    if os.environ.get("TORCHELASTIC_RUN_ID") or os.environ.get("GROUP_RANK"):
        return "torchrun"
    if os.environ.get("MASTER_ADDR") and os.environ.get("NODE_RANK"):
        return "env"
    return None


@dataclass(frozen=True)
class JobInfo:
    """Who ran a training process: executor, host, SLURM job (array) ids and requeue count."""

    executor: str
    host: str
    job_id: str | None  # the launcher's name of the job (DIMCOLLAPSE_JOB_ID, else SLURM_JOB_ID)
    slurm_job_id: str | None
    slurm_array_job_id: str | None
    slurm_array_task_id: str | None
    requeue_count: int

    def record(self) -> dict[str, object]:
        """Flat keys for metrics.json."""
        return asdict(self)

    @property
    def requeue_target(self) -> str | None:
        """What ``scontrol requeue`` takes: ``<array job>_<task>`` for array tasks, else the job id."""
        if self.slurm_array_job_id and self.slurm_array_task_id:
            return f"{self.slurm_array_job_id}_{self.slurm_array_task_id}"
        return self.slurm_job_id


def job_info() -> JobInfo:
    """The JobInfo of this process from the environment: DIMCOLLAPSE_EXECUTOR, SLURM_*, and what a study's
    launcher sets (DIMCOLLAPSE_JOB_ID, DIMCOLLAPSE_ARRAY_INDEX, DIMCOLLAPSE_REQUEUE_COUNT) outside SLURM."""
    executor = os.environ.get("DIMCOLLAPSE_EXECUTOR", "").strip().lower() or "none"
    slurm_job = os.environ.get("SLURM_JOB_ID") or None
    return JobInfo(
        executor=executor if executor in EXECUTORS else "none",
        host=socket.gethostname(),
        job_id=os.environ.get("DIMCOLLAPSE_JOB_ID") or slurm_job,
        slurm_job_id=slurm_job,
        slurm_array_job_id=os.environ.get("SLURM_ARRAY_JOB_ID") or None,
        slurm_array_task_id=os.environ.get("SLURM_ARRAY_TASK_ID")
        or os.environ.get("DIMCOLLAPSE_ARRAY_INDEX"),
        requeue_count=_int_env("SLURM_RESTART_COUNT", _int_env("DIMCOLLAPSE_REQUEUE_COUNT")),
    )


def requeue_wanted() -> bool:
    """True under SLURM unless DIMCOLLAPSE_REQUEUE=0 (a launcher that requeues by itself)."""
    return bool(os.environ.get("SLURM_JOB_ID")) and os.environ.get("DIMCOLLAPSE_REQUEUE", "1") != "0"


def requeue_job(info: JobInfo) -> str:
    """Run ``scontrol requeue`` for the job of ``info``; returns what happened, for the stop message."""
    target = info.requeue_target
    if not target:
        return "not requeued (no SLURM job id)"
    try:
        done = subprocess.run(
            ["scontrol", "requeue", target], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"requeueing SLURM job {target} failed ({type(e).__name__}); requeue it by hand"
    if done.returncode != 0:
        why = " ".join((done.stderr or done.stdout).split())[:200]
        return f"requeueing SLURM job {target} failed ({why}); requeue it by hand"
    return f"requeued SLURM job {target}"
