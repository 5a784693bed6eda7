"""What a study's runs are doing, read from the study folder: ``dimcollapse study status DIR``.

A run is done (its metrics.json), failed (the ledger says so and it has no metrics.json), running,
queued or requeued (its SLURM job in ``squeue``, or a local run whose process lives); steps and ETA come
from the run's ``progress.json`` (written by the training's rank 0).
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dimcollapse.errors import InputError
from dimcollapse.launch.base import DONE, FAILED, QUEUED, REQUEUED, RUNNING
from dimcollapse.launch.slurm_queue import squeue
from dimcollapse.study.ledger import JOBS, Ledger, read_json_dict
from dimcollapse.utils.atomic import process_alive
from dimcollapse.utils.lock import read_lock

PROGRESS = "progress.json"


@dataclass
class RunStatus:
    """One row of ``study status``."""

    run_id: str
    state: str
    executor: str = ""
    job_id: str = ""
    step: int | None = None
    max_steps: int | None = None
    eta_s: float | None = None
    requeues: int = 0
    error: str = ""


def _seconds(stamp: Any) -> float:
    """Epoch seconds from a UTC stamp ``YYYY-MM-DDTHH:MM:SSZ`` (or a number)."""
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
        return float(stamp)
    return float(calendar.timegm(time.strptime(str(stamp).rstrip("Z"), "%Y-%m-%dT%H:%M:%S")))


def eta_seconds(progress: dict[str, Any], now: float) -> float | None:
    """Remaining time = (now - session start) / steps this session x steps left, from progress.json.

    The session is the run's life since its last (re)start (a requeued job resumes mid-run).
    """
    try:
        step, total = int(progress["step"]), int(progress["max_steps"])
        since = _seconds(progress.get("session_started", progress["started"]))
        first = int(progress.get("session_start_step", 0) or 0)
    except (KeyError, TypeError, ValueError):
        return None
    if total and step >= total:
        return 0.0
    if step <= first:
        return None
    return max(0.0, (now - since) / (step - first) * (total - step))


def _study_alive(out: Path) -> bool:
    holder = read_lock(out / ".study.lock")
    try:
        return holder is not None and process_alive(int(holder.get("pid", -1)))
    except (TypeError, ValueError):
        return False


def study_status(out: Path) -> list[RunStatus]:
    """The status of every run the study folder knows of (ledger order)."""
    if not (out / JOBS).is_file():
        raise InputError(
            f"'{out}' is not a study folder started by this version (no {JOBS}); pass the folder given "
            "to 'dimcollapse study --out'."
        )
    ledger = Ledger(out).jobs
    slurm_ids = [
        str(e.get("job_id")) for e in ledger.values() if e.get("executor") == "slurm" and e.get("job_id")
    ]
    queue = squeue(slurm_ids) if slurm_ids else {}
    alive = _study_alive(out)
    now = time.time()
    rows = []
    for run_id, entry in ledger.items():
        run_dir = out / "runs" / run_id
        progress = read_json_dict(run_dir / PROGRESS)
        job_id = str(entry.get("job_id", ""))
        row = RunStatus(
            run_id, QUEUED, str(entry.get("executor", "")), job_id, error=str(entry.get("error", ""))
        )
        row.requeues = int(progress.get("requeue_count", progress.get("requeues", 0)) or 0)
        if (run_dir / "metrics.json").is_file():
            row.state = DONE
        elif queue and job_id in queue:
            state, restarts = queue[job_id]
            row.requeues = max(row.requeues, restarts)
            row.state = RUNNING if state in ("RUNNING", "COMPLETING") else REQUEUED if restarts else QUEUED
        elif entry.get("state") == FAILED or entry.get("executor") == "slurm" or not alive:
            row.state = FAILED  # its job left the queue, or its study process is gone, without metrics.json
            row.error = row.error or "ended without metrics.json; rerun the study (or --retry-failed)"
        else:
            row.state = RUNNING if progress.get("state") == "running" else QUEUED
        if row.state != DONE and progress:
            row.step, row.max_steps = progress.get("step"), progress.get("max_steps")
            row.eta_s = eta_seconds(progress, now)
        elif row.state == DONE:
            row.step = row.max_steps = progress.get("max_steps") if progress else None
        rows.append(row)
    return rows
