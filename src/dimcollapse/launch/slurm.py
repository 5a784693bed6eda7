"""The ``slurm`` executor: one submitit job array per resource shape (usually one for the whole grid).

Each array task runs ``TrainInTask`` (the run's ``dimcollapse train``) under ``srun`` with
``--ntasks-per-node`` = the run's ``trainer.devices`` (Lightning reads the ranks from SLURM's
environment and refuses ``srun -n``), ``--nodes`` = ``trainer.num_nodes``, ``--gpus-per-node`` =
devices on GPU runs, ``--signal=USR1@<signal_delay_s>`` as the preemption warning and ``--requeue``.
The study polls ``squeue`` (no accounting daemon needed) and reads the run folders.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from dimcollapse.errors import ConfigError
from dimcollapse.launch.base import DONE, FAILED, QUEUED, REQUEUED, RUNNING, Executor, Job, Outcome
from dimcollapse.launch.options import ExecutorOptions
from dimcollapse.launch.slurm_queue import ACTIVE, cancel, squeue
from dimcollapse.launch.slurm_task import Entry, TrainInTask
from dimcollapse.launch.task import RunTask, clear_unstarted, is_done
from dimcollapse.utils.atomic import atomic_write_text

JOB_NAME = "dimcollapse"


def shape(task: RunTask) -> tuple[int, int, bool]:
    """What a run asks of SLURM: nodes, tasks (devices) per node, GPUs or not."""
    return (task.num_nodes, task.devices, task.uses_gpu)


def sbatch_parameters(opts: ExecutorOptions, task: RunTask, count: int) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters for an array of ``count`` runs shaped like ``task``."""
    nodes, per_node, gpu = shape(task)
    params: dict[str, Any] = {
        "job_name": JOB_NAME,
        "time": opts.time_min,
        "nodes": nodes,
        "ntasks_per_node": per_node,
        "array_parallelism": min(opts.array_parallelism, count),
        "stderr_to_stdout": False,
    }
    if gpu:
        params["gpus_per_node"] = per_node
    for key in ("partition", "account", "qos", "constraint", "cpus_per_task", "setup"):
        value = getattr(opts, key)
        if value:
            params[key] = value
    if opts.mem_gb is not None:
        params["mem"] = f"{max(1, round(opts.mem_gb * 1024))}MB"
    params["additional_parameters"] = {
        "signal": f"USR1@{opts.signal_delay_s}",
        "requeue": True,
        **opts.sbatch,
    }
    return params


def group(tasks: list[RunTask]) -> dict[tuple[int, int, bool], list[RunTask]]:
    """Tasks by shape, in order (one job array each)."""
    groups: dict[tuple[int, int, bool], list[RunTask]] = {}
    for t in tasks:
        groups.setdefault(shape(t), []).append(t)
    return groups


def sbatch_scripts(
    opts: ExecutorOptions, tasks: list[RunTask], folder: Path
) -> list[tuple[list[RunTask], str]]:
    """The sbatch script of each job array, as submitit writes it (for ``--dry-run``)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    scripts = []
    for members in group(tasks).values():
        params = sbatch_parameters(opts, members[0], len(members))
        text = _make_sbatch_string(command=command, folder=str(folder), map_count=len(members), **params)
        scripts.append((members, text))
    return scripts


def write_dry_run(opts: ExecutorOptions, tasks: list[RunTask], launch_dir: Path) -> list[Path]:
    """Write ``launch/dry-run/array-<i>.sbatch`` per job array; return their paths. Nothing is submitted."""
    out = []
    folder = launch_dir / "slurm" / "%j"
    for i, (_members, text) in enumerate(sbatch_scripts(opts, tasks, folder)):
        path = launch_dir / "dry-run" / f"array-{i}.sbatch"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
        out.append(path)
    return out


class SlurmExecutor(Executor):
    """Submits each group of runs as one job array through submitit; polls ``squeue``."""

    name = "slurm"

    def __init__(self, opts: ExecutorOptions, launch_dir: Path, entry: Entry) -> None:
        self.opts = opts
        self.folder = launch_dir / "slurm" / "%j"
        self.entry = entry
        self.poll_interval_s = float(opts.poll_s)
        self.jobs: dict[str, Job] = {}  # job id -> job (not ended yet)
        self.tasks: dict[str, RunTask] = {}
        self.states: dict[str, tuple[str, int]] = {}

    def attach(self, job: Job, task: RunTask) -> None:
        """Follow a job submitted earlier (a rerun of the study while its array still runs)."""
        self.jobs[job.job_id] = job
        self.tasks[job.job_id] = task

    def adopt(self, job_id: str, task: RunTask) -> bool:
        """Follow a job of an earlier study process that SLURM still holds, instead of submitting it twice."""
        states = squeue([job_id]) if job_id else None
        if not states or job_id not in states or states[job_id][0] not in ACTIVE:
            return False
        self.attach(Job(task.run_id, job_id), task)
        return True

    def submit(self, tasks: list[RunTask]) -> list[Job]:
        """One job array per shape; each array task trains one run."""
        import submitit

        by_run: dict[str, Job] = {}
        for members in group(tasks).values():
            for t in members:
                clear_unstarted(t.out_dir)
            executor = submitit.SlurmExecutor(folder=self.folder)
            executor.update_parameters(**sbatch_parameters(self.opts, members[0], len(members)))
            calls = [TrainInTask(self.entry, str(t.config_file), str(t.out_dir)) for t in members]
            try:
                jobs = executor.submit_array(calls)
            except Exception as e:  # sbatch's refusal (bad account, qos, time): one line
                raise ConfigError(f"sbatch refused the job array: {' '.join(str(e).split())[:600]}") from None
            for i, (t, j) in enumerate(zip(members, jobs, strict=True)):
                job = Job(t.run_id, str(j.job_id), i, Path(str(j.paths.stdout)))
                self.attach(job, t)
                by_run[t.run_id] = job
        return [by_run[t.run_id] for t in tasks]

    def pending(self) -> int:
        """Jobs that have not ended."""
        return len(self.jobs)

    def running(self) -> list[str]:
        """Runs whose job runs now."""
        return [self.jobs[j].run_id for j, (s, _) in self.states.items() if j in self.jobs and s == "RUNNING"]

    def state_of(self, job_id: str) -> str:
        """queued / running / requeued for a job SLURM still holds."""
        state, restarts = self.states.get(job_id, ("PENDING", 0))
        if state == "RUNNING" or state == "COMPLETING":
            return RUNNING
        return REQUEUED if restarts > 0 or state.startswith("REQUEUE") else QUEUED

    def poll(self) -> list[Outcome]:
        """Runs whose job left the queue: done (metrics.json written) or failed (the log's error line)."""
        if not self.jobs:
            return []
        states = squeue(list(self.jobs))
        if states is None:
            return []
        self.states = states
        ended = []
        for job_id, job in list(self.jobs.items()):
            if job_id in states and states[job_id][0] in ACTIVE:
                continue
            task = self.tasks.pop(job_id)
            del self.jobs[job_id]
            if is_done(task.out_dir):
                ended.append(Outcome(job.run_id, DONE, job_id, exit_code=0))
            else:
                ended.append(Outcome(job.run_id, FAILED, job_id, error=self._reason(job_id)))
        return ended

    def _reason(self, job_id: str) -> str:
        from dimcollapse.launch.local import last_error_line

        folder = Path(str(self.folder).replace("%j", job_id))
        for log in sorted(folder.glob(f"{job_id}_*_log.err")) + sorted(folder.glob(f"{job_id}_*_log.out")):
            line = last_error_line(str(log))
            if line:
                return line
        return f"SLURM job {job_id} ended without metrics.json; see {folder}"

    def cancel(self) -> None:
        """Leave the jobs to SLURM (they run on without the study; rerun the study to gather them)."""

    def cancel_jobs(self) -> None:
        """``scancel`` every job of this study that has not ended."""
        cancel(list(self.jobs))
