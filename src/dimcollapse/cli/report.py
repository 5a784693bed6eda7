"""``dimcollapse report RUN_OR_STUDY_DIR``: the self-contained HTML collapse report."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    folder: Path = typer.Argument(..., help="A run folder (metrics.json) or a study folder (results.json)."),
    out: Path = typer.Option(None, "--out", help="Where to write the report (default: FOLDER/report)."),
    map_method: str = typer.Option("auto", "--map", help="2-D map: auto (UMAP if installed), umap or pca."),
) -> None:
    """Write FOLDER/report/index.html with the figures embedded, and the figures as PNG files."""
    from rich.console import Console

    from dimcollapse.errors import ConfigError
    from dimcollapse.report.build import build_report

    if map_method not in ("auto", "umap", "pca"):
        raise ConfigError(f"unknown --map '{map_method}'. Valid: auto, umap, pca.")
    page = build_report(folder, out, map_method)
    Console().print(f"report: {page}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
