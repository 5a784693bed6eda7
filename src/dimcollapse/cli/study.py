"""``dimcollapse study STUDY.yaml``: run a grid of training runs (resumable), then gather results.

``dimcollapse study status DIR [--retry-failed]``: each run's state, job id, steps and ETA.
"""

from __future__ import annotations

from pathlib import Path

import typer

PARALLEL_HELP = "local executor: runs at once (GPUs and CPU threads are split between them)."


def study(
    study_file: Path = typer.Argument(..., help="Study YAML (see configs/studies/), or 'status DIR'."),
    overrides: list[str] = typer.Argument(
        None, help="key=value overrides applied to every run; executor.key=value set the executor."
    ),
    out: Path = typer.Option(None, "--out", help="Study folder (default: runs/<study name>)."),
    executor: str = typer.Option(
        None, "--executor", help="local (default) or slurm (a job array via submitit)."
    ),
    parallel: int = typer.Option(None, "--parallel", help=PARALLEL_HELP),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Write the run list (and sbatch scripts); run nothing."
    ),
    baselines: bool = typer.Option(True, help="Also compute raw-pixel and random-init kNN baselines."),
    report: bool = typer.Option(True, help="Write the HTML report at the end."),
    fail_fast: bool = typer.Option(False, help="Stop at the first failed run instead of recording it."),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="With 'status DIR': run the failed runs again."
    ),
    scale: str = typer.Option(
        None, "--scale", help="A scaled-down variant named in the study's 'scale' entry (configs/papers/)."
    ),
) -> None:
    """Train every run of a study (each its own process, locally or on SLURM); a rerun skips finished runs."""
    if str(study_file) == "status" and not study_file.is_file():
        from dimcollapse.cli.study_status import status

        status(list(overrides or []), retry_failed)
        return
    if retry_failed:
        raise typer.BadParameter("--retry-failed goes with 'dimcollapse study status DIR'.")
    from dimcollapse.cli.study_launch import launch_study

    launch_study(
        study_file, list(overrides or []), out, executor, parallel, dry_run, baselines, report, fail_fast,
        scale=scale,
    )  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("study")(study)
