"""A study's launch ledger: ``launch/jobs.json`` (each run's executor, job id, array index, log, last
known state) and ``launch/study.json`` (the study file, overrides and executor block it was started with).

The study process writes both (atomically, under the study lock); ``dimcollapse study status`` reads them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, TypedDict

from dimcollapse.launch.base import Job
from dimcollapse.utils.atomic import atomic_write_json

JOBS = Path("launch") / "jobs.json"
STUDY = Path("launch") / "study.json"


def read_json_dict(path: Path) -> dict[str, Any]:
    """The mapping in ``path`` ({} when missing or not a JSON mapping)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class JobEntry(TypedDict, total=False):
    """One run's line of ``launch/jobs.json``: where it was submitted and how it stands."""

    executor: str
    job_id: str
    array_index: int | None
    log: str
    state: str
    submitted: str
    updated: str
    error: str
    submissions: int


def read_jobs(path: Path) -> dict[str, JobEntry]:
    """The entries of a jobs.json ({} when missing or unreadable; an entry that is no object is dropped)."""
    return {str(k): JobEntry(**v) for k, v in read_json_dict(path).items() if isinstance(v, dict)}


class Ledger:
    """The jobs of one study folder, kept in memory and written through."""

    def __init__(self, out: Path) -> None:
        self.path = out / JOBS
        self.jobs: dict[str, JobEntry] = read_jobs(self.path)

    def record(self, jobs: list[Job], executor: str) -> None:
        """Note newly submitted jobs."""
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        for job in jobs:
            entry = self.jobs.setdefault(job.run_id, {})
            entry.update({"executor": executor, "job_id": job.job_id, "array_index": job.array_index})
            entry.update({"log": str(job.log_file or ""), "state": "queued", "submitted": now, "error": ""})
            entry["submissions"] = int(entry.get("submissions", 0)) + 1
        self.save()

    def update(self, run_id: str, state: str, error: str = "", job_id: str = "") -> None:
        """Record how a run ended (or stands)."""
        entry = self.jobs.setdefault(run_id, {})
        entry.update({"state": state, "error": error, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
        if job_id and entry.get("executor") == "local":
            entry["job_id"] = job_id
        self.save()

    def save(self) -> None:
        """Write ``launch/jobs.json`` atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, self.jobs)


def write_study_record(
    out: Path, study_file: Path, overrides: list[str], executor: dict[str, Any], scale: str | None = None
) -> None:
    """What ``--retry-failed`` needs to start the study again the same way."""
    (out / STUDY).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / STUDY, {"study_file": str(study_file.resolve()), "overrides": overrides,
                                    "executor": executor, "scale": scale})  # fmt: skip
