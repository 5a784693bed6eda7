"""``dimcollapse demo``: the default Fashion-MNIST study, the toy theory and the report (``make demo``)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

import dimcollapse
from dimcollapse.errors import InputError


def find_configs() -> Path:
    """The project's configs/ folder: next to the source tree (a clone) or in the current directory."""
    here = Path(dimcollapse.__file__).resolve()
    for candidate in (*[p / "configs" for p in here.parents[:4]], Path.cwd() / "configs"):
        if (candidate / "studies" / "demo.yaml").is_file():
            return candidate
    raise InputError(
        "cannot find configs/studies/demo.yaml. Run from a clone of dimcollapse, or pass --study PATH."
    )


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Study folder for the demo."),
    study_file: Path = typer.Option(None, "--study", help="Study YAML (default: configs/studies/demo.yaml)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides applied to every run."),
) -> None:
    """Run the default study (5 SSL variants of equal length on Fashion-MNIST), the toy theory, the report."""
    from rich.console import Console
    from rich.markup import escape

    from dimcollapse.cli.pipeline import run_pipeline
    from dimcollapse.study.grid import load_study
    from dimcollapse.study.runner import LOCK, resolve_configs
    from dimcollapse.utils.lock import folder_lock

    console = Console(stderr=True)
    path = study_file if study_file is not None else find_configs() / "studies" / "demo.yaml"
    study = load_study(path)
    t0 = time.perf_counter()
    where = f"'{escape(str(path))}' into '{escape(str(out))}'"
    console.print(f"[bold]dimcollapse demo[/]: {len(study.runs)} runs of {where}")
    plan = resolve_configs(study, list(overrides or []))
    with folder_lock(out / LOCK, "study folder"):
        result, page = run_pipeline(study, out, list(overrides or []), console=console, plan=plan)
    minutes = (time.perf_counter() - t0) / 60
    Console().print(f"demo finished in {minutes:.1f} min; open the report: [bold]{escape(str(page))}[/]")
    if result.failed:
        console.print(f"[yellow]{len(result.failed)} run(s) failed; see the report.[/]")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
