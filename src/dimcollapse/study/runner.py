"""Run a study's runs one after another, each in its own folder; rerunning skips finished runs and
resumes a run that was killed (its ``checkpoints/last.ckpt`` exists but ``metrics.json`` does not)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from dimcollapse.errors import DimCollapseError, DiskFullError, RunInterrupted, one_line
from dimcollapse.study.grid import RunSpec, Study
from dimcollapse.study.paper import PAPER_PREFIX
from dimcollapse.study.results import describe_config, flat_scalars, read_json, write_results
from dimcollapse.training.config import RunConfig, load_config, to_dict
from dimcollapse.utils.atomic import atomic_write_text, ensure_writable_dir, remove_stale_temp_files
from dimcollapse.utils.lock import folder_lock
from dimcollapse.utils.names import check_folder_name

LOCK = ".study.lock"

TrainFn = Callable[[RunConfig, Path, bool], dict[str, Any]]


@dataclass
class StudyRun:
    """Outcome of ``run_study``: the rows and what happened to each run."""

    out_dir: Path
    rows: list[dict[str, Any]]
    trained: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _default_train(cfg: RunConfig, out: Path, resume: bool) -> dict[str, Any]:
    from dimcollapse.training.run import train

    return train(cfg, out, resume=resume)


def resolve_configs(
    study: Study, extra_overrides: list[str] | None = None
) -> list[tuple[RunSpec, RunConfig]]:
    """Validate every run's config before anything trains (a typo fails the study at once)."""
    out = []
    for spec in study.runs:
        check_folder_name(spec.run_id, "study run")
        try:
            overrides = [*spec.dotlist(), *(extra_overrides or []), f"name={spec.run_id}"]
            cfg = load_config(spec.recipe or study.base, overrides)
        except DimCollapseError as e:
            raise type(e)(f"study run '{spec.run_id}': {e}") from None
        out.append((spec, cfg))
    return out


def _row(spec: RunSpec, cfg: RunConfig, status: str, metrics: dict[str, Any] | None) -> dict[str, Any]:
    row: dict[str, Any] = {"run_id": spec.run_id, "variant": spec.variant, "status": status}
    row.update(describe_config(to_dict(cfg)))
    row.update({k.split(".")[-1] if k != "trainer.seed" else "seed": v for k, v in spec.grid_point.items()})
    if metrics:
        row.update(flat_scalars(metrics))
    row.update({f"{PAPER_PREFIX}{k}": v for k, v in spec.paper.items()})  # the paper's number beside ours
    return row


def run_study(
    study: Study,
    out_dir: str | Path,
    *,
    extra_overrides: list[str] | None = None,
    train_fn: TrainFn | None = None,
    console: Console | None = None,
    fail_fast: bool = False,
) -> StudyRun:
    """Train every run of ``study`` under ``out_dir/runs/<run_id>``; gather results after each run.

    The folder is locked (``.study.lock``) for the duration; a run that fails (bad checkpoint,
    divergence, any error of its own) is recorded as failed and the study goes on, unless
    ``fail_fast``. A full disk and SIGTERM / SIGINT stop the study.
    """
    plan = resolve_configs(study, extra_overrides)
    out = ensure_writable_dir(out_dir)
    with folder_lock(out / LOCK, "study folder"):
        console = console or Console(stderr=True)
        return _run_locked(study, out, plan, train_fn or _default_train, console, fail_fast)


def _run_locked(
    study: Study,
    out: Path,
    plan: list[tuple[RunSpec, RunConfig]],
    train_fn: TrainFn,
    console: Console,
    fail_fast: bool,
) -> StudyRun:
    remove_stale_temp_files(out)  # results.json / study.yaml writes of a killed study process
    if study.path.is_file():
        atomic_write_text(out / "study.yaml", study.path.read_text())
    result = StudyRun(out, [])
    durations: list[float] = []
    t_study = time.perf_counter()
    for i, (spec, cfg) in enumerate(plan):
        run_dir = out / "runs" / spec.run_id
        done = read_json(run_dir / "metrics.json")
        if done is not None:
            result.skipped.append(spec.run_id)
            result.rows.append(_row(spec, cfg, "done", done))
            continue
        resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
        todo = len(plan) - i
        eta = f", ETA {_fmt(todo * sum(durations) / len(durations))}" if durations else ""
        verb = "resuming" if resume else "training"
        console.rule(f"[bold]run {i + 1}/{len(plan)}[/]: {verb} {escape(spec.run_id)}{eta}")
        if not resume and run_dir.exists():
            shutil.rmtree(run_dir)  # a run killed before its first checkpoint: start it afresh
        t0 = time.perf_counter()
        try:
            metrics = train_fn(cfg, run_dir, resume)
        except DiskFullError:
            write_results(out, result.rows)
            raise
        except RunInterrupted as e:
            write_results(out, result.rows)
            raise RunInterrupted(
                f"study '{study.name}', run {spec.run_id}: {e} (For the study: rerun the same study "
                "command; it resumes this run from its checkpoint.)",
                e.exit_code,
            ) from None
        except Exception as e:  # one run's failure (corrupt checkpoint, NaN, a bug) must not end the study
            if fail_fast:
                raise
            reason = one_line(e, 500)
            reason = reason if isinstance(e, DimCollapseError) else f"{type(e).__name__}: {reason}"
            console.print(f"[bold red]run {escape(spec.run_id)} failed:[/] {escape(reason)}")
            result.failed[spec.run_id] = reason
            result.rows.append({**_row(spec, cfg, f"failed: {reason}", None), "stop_reason": _failure(e)})
            write_results(out, result.rows)
            continue
        durations.append(time.perf_counter() - t0)
        (result.resumed if resume else result.trained).append(spec.run_id)
        result.rows.append(_row(spec, cfg, "done", metrics))
        write_results(out, result.rows)
    write_results(out, result.rows)
    console.print(
        f"study '{escape(study.name)}': {len(result.trained)} trained, {len(result.resumed)} resumed, "
        f"{len(result.skipped)} already done, {len(result.failed)} failed in "
        f"{_fmt(time.perf_counter() - t_study)}; results in {escape(str(out / 'results.csv'))}"
    )
    return result


def _failure(error: Exception) -> str:
    """The stop reason recorded for a run that raised ``error``."""
    from dimcollapse.training.module import NonFiniteLossError
    from dimcollapse.training.run_record import NON_FINITE

    return NON_FINITE if isinstance(error, NonFiniteLossError) else "failed"


def _fmt(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"
