"""The study command's work: the executor from the study file and the command line, then the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from dimcollapse.launch.base import Executor
    from dimcollapse.launch.options import ExecutorOptions
    from dimcollapse.launch.slurm_task import Entry
    from dimcollapse.study.runner import Plan


def launch_study(
    study_file: Path,
    items: list[str],
    out: Path | None,
    executor: str | None,
    parallel: int | None,
    dry_run: bool,
    baselines: bool,
    report: bool,
    fail_fast: bool,
    scale: str | None = None,
) -> None:
    """Validate the study, its runs and the executor (nothing written before), then run it."""
    from dimcollapse.cli.main import run
    from dimcollapse.cli.pipeline import run_pipeline
    from dimcollapse.errors import RunsFailed
    from dimcollapse.launch import options
    from dimcollapse.study.grid import load_study
    from dimcollapse.study.ledger import write_study_record
    from dimcollapse.study.plan import resolve_configs
    from dimcollapse.study.runner import LOCK
    from dimcollapse.utils.lock import folder_lock
    from dimcollapse.utils.names import check_folder_name

    spec = load_study(study_file)
    if scale is not None:
        from dimcollapse.study.scale import scaled_study

        spec = scaled_study(spec, scale)
    mine, overrides = options.parse_overrides(items)
    opts = options.resolve(spec.options.get("executor"), mine, executor, parallel)
    folder = out if out is not None else Path("runs") / check_folder_name(spec.name, "study")
    plan = resolve_configs(spec, overrides)  # every run valid before the folder is touched
    chosen = _executor(opts, folder, plan, dry_run, run)
    console = Console(stderr=True)
    with folder_lock(folder / LOCK, "study folder"):
        write_study_record(folder, study_file, overrides, opts.as_dict(), scale)
        if dry_run:
            _dry_run(opts, folder, plan, console)
            return
        result, _ = run_pipeline(
            spec, folder, overrides, baselines=baselines, report=report, fail_fast=fail_fast,
            executor=chosen, plan=plan, console=console,
        )  # fmt: skip
    if result.all_failed:
        raise RunsFailed(
            f"every run of study '{spec.name}' failed ({len(result.failed)}); see {folder / 'results.csv'} "
            f"and 'dimcollapse study status {folder}'."
        )


def _executor(
    opts: ExecutorOptions, folder: Path, plan: Plan, dry_run: bool, entry: Entry
) -> Executor | None:
    """The study's executor (None for a dry run); a missing SLURM or partition is refused here."""
    from dimcollapse.launch.local import LocalExecutor
    from dimcollapse.launch.slurm import SlurmExecutor
    from dimcollapse.launch.slurm_queue import check_cluster
    from dimcollapse.launch.task import device_count

    for spec, cfg in plan:  # every run must say how many devices it needs
        device_count(cfg.trainer.devices, f"study run '{spec.run_id}'")
    if opts.name == "slurm":
        if dry_run:
            return None  # the scripts can be written and read anywhere, without a cluster
        check_cluster(opts.partition)
        return SlurmExecutor(opts, folder / "launch", entry)
    return LocalExecutor(opts.parallel)


def _dry_run(opts: ExecutorOptions, folder: Path, plan: Plan, console: Console) -> None:
    """Write the run list and, for slurm, the sbatch scripts; run and submit nothing."""
    from dimcollapse.launch.slurm import write_dry_run
    from dimcollapse.study.runner import write_tasks
    from dimcollapse.utils.atomic import atomic_write_json

    tasks = write_tasks(folder, plan)
    runs = [{"run_id": t.run_id, "config": str(t.config_file), "out": str(t.out_dir), "devices": t.devices,
             "num_nodes": t.num_nodes, "accelerator": t.accelerator,
             "command": f"dimcollapse train {t.config_file} --out {t.out_dir}"} for t in tasks]  # fmt: skip
    atomic_write_json(folder / "launch" / "runs.json", runs)
    console.print(f"dry run: {len(runs)} run(s) listed in {folder / 'launch' / 'runs.json'}", markup=False)
    if opts.name == "slurm":
        for path in write_dry_run(opts, tasks, folder / "launch"):
            console.print(f"dry run: sbatch script {path} (not submitted)", markup=False)
