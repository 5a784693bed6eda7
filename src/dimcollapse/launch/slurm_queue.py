"""What SLURM says about jobs, from ``squeue`` (works without the accounting daemon, unlike ``sacct``)."""

from __future__ import annotations

import shutil
import subprocess

from dimcollapse.errors import ConfigError

ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
          "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "PREEMPTED"}  # fmt: skip


def squeue(job_ids: list[str]) -> dict[str, tuple[str, int]] | None:
    """``{job id: (state, restarts)}`` of the jobs SLURM still holds (array tasks as ``<array>_<i>``).

    None when ``squeue`` cannot answer (then nothing is concluded about any job).
    """
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    cmd = ["squeue", "-h", "-r", "-j", ",".join(arrays), "-O", "JobArrayID:40,State:24,RestartCnt:8"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        if "Invalid job id" in out.stderr:  # every job asked about has left the queue
            return {}
        return None
    states: dict[str, tuple[str, int]] = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            restarts = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
            states[parts[0]] = (parts[1], restarts)
    return states


def partitions() -> list[str]:
    """The cluster's partition names (``sinfo``)."""
    out = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30, check=False)
    if out.returncode != 0:
        raise ConfigError(
            f"sinfo failed ({out.stderr.strip()[:200] or 'no answer'}): SLURM does not answer here; "
            "start it (scripts/slurm-up.sh) or use --executor local."
        )
    return sorted({p.strip() for p in out.stdout.split() if p.strip()})


def check_cluster(partition: str | None) -> None:
    """sbatch and squeue are installed and the partition exists."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        raise ConfigError(
            "executor 'slurm' needs SLURM's sbatch and squeue, which are not installed here; run on a "
            "cluster's login node (or start one: scripts/slurm-up.sh), use --dry-run, or --executor local."
        )
    if partition is not None and shutil.which("sinfo") is not None:
        names = partitions()
        if partition not in names:
            raise ConfigError(
                f"SLURM partition '{partition}' does not exist; valid partitions: "
                f"{', '.join(names) or 'none'}. "
                "Fix executor.partition."
            )


def requeue(job_id: str) -> None:
    """``scontrol requeue JOB``: SLURM stops the job (SIGTERM, SIGKILL after KillWait) and queues it again."""
    subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=30, check=True)


def cancel(job_ids: list[str]) -> None:
    """``scancel`` the jobs."""
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=30, check=False)
