"""The ``local`` executor: each run is a ``dimcollapse train`` subprocess; one at a time or N at once.

With GPUs each running run gets its own devices (``CUDA_VISIBLE_DEVICES``: as many as its
``trainer.devices``); on CPU the machine's cores are split between the runs at once (``OMP_NUM_THREADS``
= cores // (runs at once x devices)). Each run writes its console output to its log file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import IO

from dimcollapse.errors import ConfigError
from dimcollapse.launch.base import DONE, FAILED, Executor, Job, Outcome
from dimcollapse.launch.task import (
    ENV_ARRAY_INDEX,
    ENV_EXECUTOR,
    ENV_JOB_ID,
    ENV_REQUEUES,
    RunTask,
    clear_unstarted,
    is_done,
    train_argv,
)

INTERRUPTED = {143: "SIGTERM", 130: "SIGINT", -signal.SIGTERM: "SIGTERM", -signal.SIGINT: "SIGINT"}


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """GPU indices this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else ``nvidia-smi -L``'s list."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def last_error_line(path: str) -> str:
    """The last ``error: ...`` line of a run's log (the CLI's one-line error), without the prefix."""
    try:
        with open(path, errors="replace") as fh:
            lines = fh.read()[-20000:].splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ").strip()
    return ""


@dataclass
class _Running:
    task: RunTask
    proc: subprocess.Popen[bytes]
    log: IO[str]
    gpus: list[str]


class LocalExecutor(Executor):
    """Runs up to ``parallel`` tasks at once on this machine, each as its own process (session)."""

    name = "local"

    def __init__(self, parallel: int = 1, python: str | None = None) -> None:
        if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
            raise ConfigError(f"--parallel must be a whole number >= 1 (runs at once), got {parallel!r}.")
        self.parallel = parallel
        self.python = python or sys.executable
        self.queue: list[tuple[int, RunTask]] = []
        self.active: list[_Running] = []
        self.free_gpus: list[str] | None = None
        self.cancelled = False

    def submit(self, tasks: list[RunTask]) -> list[Job]:
        """Queue ``tasks``; they start as slots (and devices) come free at ``poll``."""
        if any(t.uses_gpu for t in tasks) and self.free_gpus is None:
            self.free_gpus = visible_gpus()
            most = max(t.devices * t.num_nodes for t in tasks if t.uses_gpu)
            if len(self.free_gpus) < most:
                raise ConfigError(
                    f"a run needs {most} GPUs but this machine shows {len(self.free_gpus)} "
                    f"({', '.join(self.free_gpus) or 'none'}); lower trainer.devices or use --executor slurm."
                )
        start = len(self.queue) + len(self.active)
        self.queue.extend((start + i, t) for i, t in enumerate(tasks))
        return [
            Job(t.run_id, f"local-{os.getpid()}-{start + i}", start + i, t.log_file)
            for i, t in enumerate(tasks)
        ]

    def pending(self) -> int:
        """Runs queued or running."""
        return len(self.queue) + len(self.active)

    def running(self) -> list[str]:
        """Ids of the runs whose process runs now."""
        return [r.task.run_id for r in self.active]

    def _threads(self, task: RunTask) -> int:
        at_once = min(self.parallel, len(self.queue) + len(self.active) + 1)
        return max(1, cpu_count() // max(1, at_once * task.devices))

    def _start(self, index: int, task: RunTask, gpus: list[str]) -> None:
        clear_unstarted(task.out_dir)
        env = dict(os.environ)
        env.update(
            {ENV_EXECUTOR: "local", ENV_JOB_ID: f"local-{os.getpid()}-{index}", ENV_ARRAY_INDEX: str(index)}
        )
        env[ENV_REQUEUES] = "0"
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        if self.parallel > 1 and not task.uses_gpu and task.num_threads is None:
            threads = str(self._threads(task))
            env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
        task.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(task.log_file, "a")  # noqa: SIM115 (closed when the run ends)
        log.write(f"$ dimcollapse {' '.join(train_argv(task.config_file, task.out_dir))}\n")
        log.write(f"# started {time.time():.3f} with OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', '')}\n")
        log.flush()
        argv = [self.python, "-m", "dimcollapse", *train_argv(task.config_file, task.out_dir)]
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.active.append(_Running(task, proc, log, gpus))

    def _fill(self) -> None:
        while self.queue and len(self.active) < self.parallel and not self.cancelled:
            index, task = self.queue[0]
            gpus: list[str] = []
            if task.uses_gpu:
                need = task.devices
                assert self.free_gpus is not None
                if len(self.free_gpus) < need:
                    return  # wait for devices
                gpus, self.free_gpus = self.free_gpus[:need], self.free_gpus[need:]
            self.queue.pop(0)
            self._start(index, task, gpus)

    def poll(self) -> list[Outcome]:
        """Collect the runs that ended and start queued ones in the free slots."""
        ended: list[Outcome] = []
        for run in list(self.active):
            code = run.proc.poll()
            if code is None:
                continue
            self.active.remove(run)
            run.log.close()
            if self.free_gpus is not None:
                self.free_gpus.extend(run.gpus)
            ended.append(self._outcome(run, code))
        self._fill()
        return ended

    def _outcome(self, run: _Running, code: int) -> Outcome:
        job = f"local-pid-{run.proc.pid}"
        if code == 0 and is_done(run.task.out_dir):
            return Outcome(run.task.run_id, DONE, job, exit_code=0)
        reason = last_error_line(str(run.task.log_file))
        if code in INTERRUPTED and not reason:
            reason = f"interrupted by {INTERRUPTED[code]}; rerun the study to resume it from its checkpoint"
        if not reason:
            reason = f"exit status {code}; see {run.task.log_file}"
        return Outcome(run.task.run_id, FAILED, job, error=reason, exit_code=code)

    def cancel(self) -> None:
        """SIGTERM every running run's process group (each saves last.ckpt) and wait for them to end."""
        self.cancelled = True
        self.queue.clear()
        for run in self.active:
            if run.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 120
        for run in self.active:
            try:
                run.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(run.proc.pid, signal.SIGKILL)
                run.proc.wait()
            run.log.close()
        self.active.clear()
