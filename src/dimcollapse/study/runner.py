"""Run a study's runs through an executor (each run its own ``dimcollapse train`` process by default),
wait for them, and gather their results from the run folders; rerunning skips finished runs and resumes
a run that was killed (its ``checkpoints/last.ckpt`` exists but ``metrics.json`` does not)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from dimcollapse.errors import DimCollapseError, InputError, RunInterrupted
from dimcollapse.launch.base import DONE, Executor, Outcome
from dimcollapse.launch.inline import InlineExecutor
from dimcollapse.launch.local import LocalExecutor
from dimcollapse.launch.task import LAST, RunTask, make_task
from dimcollapse.records.row import ResultRow
from dimcollapse.records.schema import JsonObject
from dimcollapse.study.grid import RunSpec, Study
from dimcollapse.study.ledger import Ledger
from dimcollapse.study.paper import PAPER_PREFIX
from dimcollapse.study.plan import MAX_RUNS, resolve_configs
from dimcollapse.study.results import describe_config, flat_scalars, result_row, run_metrics, write_results
from dimcollapse.training.config import RunConfig, to_dict, to_yaml
from dimcollapse.utils.atomic import atomic_write_text, ensure_writable_dir, remove_stale_temp_files
from dimcollapse.utils.lock import folder_lock

LOCK = ".study.lock"
__all__ = ["LOCK", "MAX_RUNS", "StudyRun", "TrainFn", "resolve_configs", "run_study", "write_tasks"]

TrainFn = Callable[[RunConfig, Path, bool], dict[str, Any]]
Plan = list[tuple[RunSpec, RunConfig]]


@dataclass
class StudyRun:
    """Outcome of ``run_study``: the rows and what happened to each run."""

    out_dir: Path
    rows: list[ResultRow]
    trained: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def all_failed(self) -> bool:
        """True when runs were attempted and every one of them failed."""
        return bool(self.failed) and not (self.trained or self.resumed or self.skipped)


def _row(spec: RunSpec, cfg: RunConfig, status: str, metrics: JsonObject | None) -> ResultRow:
    row = result_row(spec.run_id, spec.variant, status, describe_config(to_dict(cfg)))
    row.update({k.split(".")[-1] if k != "trainer.seed" else "seed": v for k, v in spec.grid_point.items()})
    if metrics:
        row.update(flat_scalars(metrics))
    row.update({f"{PAPER_PREFIX}{k}": v for k, v in spec.paper.items()})  # the paper's number beside ours
    return row


def write_tasks(out: Path, plan: Plan) -> list[RunTask]:
    """Each run's resolved config as ``launch/configs/<run>.yaml``; the launch tasks, in plan order."""
    tasks = []
    for spec, cfg in plan:
        config_file = out / "launch" / "configs" / f"{spec.run_id}.yaml"
        config_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(config_file, to_yaml(cfg))
        log = out / "launch" / "logs" / f"{spec.run_id}.log"
        tasks.append(
            make_task(spec.run_id, config_file, out / "runs" / spec.run_id, log, to_dict(cfg)["trainer"])
        )
    return tasks


def _inline(plan: Plan, train_fn: TrainFn) -> InlineExecutor:
    configs = {spec.run_id: cfg for spec, cfg in plan}
    return InlineExecutor(lambda task, resume: train_fn(configs[task.run_id], task.out_dir, resume))


def run_study(
    study: Study,
    out_dir: str | Path,
    *,
    extra_overrides: list[str] | None = None,
    train_fn: TrainFn | None = None,
    console: Console | None = None,
    fail_fast: bool = False,
    executor: Executor | None = None,
    plan: Plan | None = None,
) -> StudyRun:
    """Train every run of ``study`` under ``out_dir/runs/<run_id>``; gather results as runs end.

    Each run is a ``dimcollapse train`` process started by ``executor`` (default: local, one at a
    time); ``train_fn`` instead trains in this process (tests). The folder is locked (``.study.lock``)
    for the duration; a run that fails is recorded as failed and the study goes on, unless
    ``fail_fast``. A full disk and SIGTERM / SIGINT stop the study (local runs save a checkpoint).
    """
    plan = plan if plan is not None else resolve_configs(study, extra_overrides)
    out = ensure_writable_dir(out_dir)
    with folder_lock(out / LOCK, "study folder"):
        console = console or Console(stderr=True)
        chosen = _inline(plan, train_fn) if train_fn is not None else executor or LocalExecutor()
        return _run_locked(study, out, plan, chosen, console, fail_fast)


def _run_locked(
    study: Study, out: Path, plan: Plan, executor: Executor, console: Console, fail_fast: bool
) -> StudyRun:
    remove_stale_temp_files(out)  # results.json / study.yaml writes of a killed study process
    if study.path.is_file():
        atomic_write_text(out / "study.yaml", study.path.read_text())
    result = StudyRun(out, [])
    rows: dict[str, ResultRow] = {}
    todo: Plan = []
    for spec, cfg in plan:
        done = run_metrics(out / "runs" / spec.run_id / "metrics.json")
        if done is None:
            todo.append((spec, cfg))
            continue
        result.skipped.append(spec.run_id)
        rows[spec.run_id] = _row(spec, cfg, "done", done)
    gather = _Gatherer(study, out, plan, result, rows, console)
    if todo:
        tasks = write_tasks(out, todo)
        gather.resuming = {t.run_id for t in tasks if (t.out_dir / LAST).is_file()}
        for task in tasks:
            if task.run_id in gather.resuming:
                console.print(f"resuming {escape(task.run_id)} from its checkpoints/last.ckpt")
        ledger = Ledger(out)
        gather.ledger = ledger
        fresh = [t for t in tasks if not _adopted(executor, ledger, t, console)]
        ledger.record(executor.submit(fresh) if fresh else [], executor.name)
        console.print(f"study '{escape(study.name)}': {len(tasks)} run(s) to train with the {executor.name} "
                      f"executor, {len(result.skipped)} already done")  # fmt: skip
        _wait(executor, gather, fail_fast)
    gather.write()
    console.print(
        f"study '{escape(study.name)}': {len(result.trained)} trained, {len(result.resumed)} resumed, "
        f"{len(result.skipped)} already done, {len(result.failed)} failed in "
        f"{_fmt(time.perf_counter() - gather.t0)}; results in {escape(str(out / 'results.csv'))}"
    )
    return result


def _adopted(executor: Executor, ledger: Ledger, task: RunTask, console: Console) -> bool:
    """True when ``task``'s job from an earlier study process still runs and is now followed again."""
    entry = ledger.jobs.get(task.run_id, {})
    if entry.get("executor") != executor.name or not executor.adopt(str(entry.get("job_id", "")), task):
        return False
    console.print(
        f"following {escape(task.run_id)}'s job {escape(str(entry.get('job_id')))}, still in the queue"
    )
    return True


def _wait(executor: Executor, gather: _Gatherer, fail_fast: bool) -> None:
    """Poll ``executor`` until every run ended; record each as it ends."""
    try:
        while executor.pending():
            ended = executor.poll()
            for outcome in ended:
                gather.ended(outcome)
                if outcome.state != DONE and fail_fast:
                    executor.cancel()
                    if outcome.exception is not None:
                        raise outcome.exception
                    raise InputError(f"run '{outcome.run_id}' failed: {outcome.error} (--fail-fast)")
            if not ended:
                time.sleep(executor.poll_interval_s)
    except BaseException as e:
        executor.cancel()
        gather.write()
        if isinstance(executor, InlineExecutor) or isinstance(e, (DimCollapseError, SystemExit)):
            raise
        if not isinstance(e, (KeyboardInterrupt,)) and type(e).__name__ != "Terminated":
            raise
        where = ("its runs keep running on SLURM; rerun the same study command to gather them"
                 if executor.name == "slurm" else "running runs saved a checkpoint; rerun the same study "
                 "command to resume them")  # fmt: skip
        raise RunInterrupted(f"study '{gather.study.name}' interrupted: {where}.",
                             130 if isinstance(e, KeyboardInterrupt) else 143) from None  # fmt: skip


class _Gatherer:
    """Rows of the runs as they end, written to results.json/csv in plan order."""

    def __init__(
        self,
        study: Study,
        out: Path,
        plan: Plan,
        result: StudyRun,
        rows: dict[str, ResultRow],
        console: Console,
    ) -> None:
        self.study, self.out, self.plan, self.result, self.rows, self.console = (
            study,
            out,
            plan,
            result,
            rows,
            console,
        )
        self.by_id = {spec.run_id: (spec, cfg) for spec, cfg in plan}
        self.resuming: set[str] = set()
        self.ledger: Ledger | None = None
        self.t0 = time.perf_counter()
        self.ended_count = 0

    def ended(self, outcome: Outcome) -> None:
        """Record one run's end (its metrics.json, or its failure)."""
        spec, cfg = self.by_id[outcome.run_id]
        self.ended_count += 1
        total = len(self.plan) - len(self.result.skipped)
        elapsed = time.perf_counter() - self.t0
        eta = _fmt(elapsed / self.ended_count * (total - self.ended_count))
        if outcome.state == DONE:
            metrics = run_metrics(self.out / "runs" / spec.run_id / "metrics.json") or {}
            resumed = spec.run_id in self.resuming or metrics.get("resumed") is True  # also a requeued job
            (self.result.resumed if resumed else self.result.trained).append(spec.run_id)
            self.rows[spec.run_id] = _row(spec, cfg, "done", metrics)
            self.console.print(f"run {self.ended_count}/{total} done: {escape(spec.run_id)} "
                               f"({_fmt(elapsed)} elapsed, ETA {eta})")  # fmt: skip
        else:
            reason = outcome.error or "failed"
            self.console.print(f"[bold red]run {escape(spec.run_id)} failed:[/] {escape(reason)}")
            self.result.failed[spec.run_id] = reason
            stop = _failure(outcome.exception) if outcome.exception is not None else _failure_text(reason)
            self.rows[spec.run_id] = row = _row(spec, cfg, f"failed: {reason}", None)
            row.set("stop_reason", stop)
        if self.ledger is not None:
            self.ledger.update(spec.run_id, outcome.state, outcome.error, outcome.job_id)
        self.write()

    def write(self) -> None:
        """results.json / results.csv of the runs ended so far, in plan order."""
        self.result.rows = [self.rows[s.run_id] for s, _ in self.plan if s.run_id in self.rows]
        write_results(self.out, self.result.rows)


def _failure_text(reason: str) -> str:
    """The stop reason of a run that failed in its own process, from its one-line error."""
    from dimcollapse.training.run_record import NON_FINITE

    return NON_FINITE if "became non-finite" in reason else "failed"


def _failure(error: BaseException) -> str:
    """The stop reason recorded for a run that raised ``error``."""
    from dimcollapse.training.module import NonFiniteLossError
    from dimcollapse.training.run_record import NON_FINITE

    return NON_FINITE if isinstance(error, NonFiniteLossError) else "failed"


def _fmt(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"
