"""``dimcollapse study STUDY.yaml``: run a grid of training runs (resumable), then gather results."""

from __future__ import annotations

from pathlib import Path

import typer


def study(
    study_file: Path = typer.Argument(..., help="Study YAML (see configs/studies/)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides applied to every run."),
    out: Path = typer.Option(None, "--out", help="Study folder (default: runs/<study name>)."),
    baselines: bool = typer.Option(True, help="Also compute raw-pixel and random-init kNN baselines."),
    report: bool = typer.Option(True, help="Write the HTML report at the end."),
    fail_fast: bool = typer.Option(False, help="Stop at the first failed run instead of recording it."),
    scale: str = typer.Option(
        None, "--scale", help="A scaled-down variant named in the study's 'scale' entry (configs/papers/)."
    ),
) -> None:
    """Train every run of a study one after another; a rerun skips finished runs and resumes killed ones."""
    from dimcollapse.cli.pipeline import run_pipeline
    from dimcollapse.study.grid import load_study
    from dimcollapse.study.runner import LOCK, resolve_configs
    from dimcollapse.utils.lock import folder_lock
    from dimcollapse.utils.names import check_folder_name

    spec = load_study(study_file)
    if scale is not None:
        from dimcollapse.study.scale import scaled_study

        spec = scaled_study(spec, scale)
    folder = out if out is not None else Path("runs") / check_folder_name(spec.name, "study")
    resolve_configs(spec, list(overrides or []))  # every run valid before the folder is touched
    with folder_lock(folder / LOCK, "study folder"):
        run_pipeline(
            spec, folder, list(overrides or []), baselines=baselines, report=report, fail_fast=fail_fast
        )


def register(app: typer.Typer) -> None:
    app.command("study")(study)
