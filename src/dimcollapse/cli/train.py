"""``dimcollapse train CONFIG.yaml [key=value ...] [--out DIR] [--resume]``: train one SSL run."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import typer
from rich.console import Console

SPEED_KEYS = ("train_time_s", "images_per_s")


def summary_keys(metrics: Iterable[str] = ()) -> list[str]:
    """What ``train`` prints: the top-1 accuracies among ``metrics`` (every configured k, every probe, and
    DirectCLR's r[:d0] ones), the catalogue's per-run metrics of r then z, training speed."""
    from dimcollapse.diagnostics import catalogue
    from dimcollapse.records import accuracy_columns

    accuracies = [key for key, _ in accuracy_columns(metrics, variants=True)]
    shown = [key for output in ("r", "z") for key, _ in catalogue.run_columns(output)]
    return [*accuracies, *shown, *SPEED_KEYS]


def train(
    config: Path = typer.Argument(..., help="YAML recipe (see configs/)."),
    overrides: list[str] = typer.Argument(
        None, help="Overrides key=value, e.g. optim.lr=0.1 data.fraction=0.1."
    ),
    out: Path = typer.Option(None, "--out", help="Output folder (default runs/<config name>)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out from its last checkpoint, with its own config."
    ),
    override_lr: float = typer.Option(
        None,
        "--override-lr",
        help="With --resume: continue with this base learning rate (the schedule is rescaled; recorded in "
        "config.yaml and metrics.json). Other changed settings are refused on resume.",
    ),
) -> None:
    """Train backbone + projector + objective (+ regularizers) and evaluate it; writes metrics.json."""
    from dimcollapse.training.config import load_config

    cfg = load_config(config, list(overrides or []))  # before importing Lightning: config errors come fast
    from dimcollapse.training.run import train as run_train

    out_dir = out if out is not None else Path("runs") / config.stem
    metrics = run_train(cfg, out_dir, resume=resume, override_lr=override_lr)
    if not metrics:  # a DDP rank other than 0: rank 0 evaluates, writes and reports
        return
    console = Console()
    for key in summary_keys(metrics):
        if key in metrics:
            value = metrics[key]
            console.print(f"{key:>18}: {value:.4f}" if isinstance(value, float) else f"{key:>18}: {value}")
    console.print(f"wrote {out_dir / 'metrics.json'}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
