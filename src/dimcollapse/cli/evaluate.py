"""``dimcollapse eval CHECKPOINT [--out DIR]``: kNN, linear probe and diagnostics of a trained checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def evaluate(
    checkpoint: Path = typer.Argument(..., help="A .ckpt written by dimcollapse train."),
    out: Path = typer.Option(
        None, "--out", help="Folder for metrics.json (default: next to the checkpoint)."
    ),
) -> None:
    """Weighted kNN (k = eval.knn_k), linear probe and full diagnostics of r and z; writes metrics.json."""
    from dimcollapse.diagnostics import catalogue
    from dimcollapse.training.evaluate_run import evaluate_checkpoint

    metrics = evaluate_checkpoint(checkpoint, out)
    console = Console()
    shown = ("knn_", "linear_", *(f"{m.key}_" for m in catalogue.METRICS if m.run))  # accuracies, run metrics
    for key, value in metrics.items():
        if key.startswith(shown):
            console.print(f"{key:>18}: {value:.4f}")
    console.print(f"wrote {(out or checkpoint.parent) / 'metrics.json'}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
