"""``dimcollapse report FOLDER [FOLDER ...]``: the self-contained HTML collapse report.

One run or study folder gives the full report; several folders (runs, studies, ``analyze`` output,
from anywhere) or one ``analyze`` folder give a one-page comparison (``report/compare.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _is_analyze_output(folder: Path) -> bool:
    """True for a folder written by `dimcollapse analyze` (metrics.json of an embedding, no run config)."""
    try:
        m = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and "erank" in m and "erank_r" not in m


def report(
    folders: list[Path] = typer.Argument(
        ..., help="Run folders (metrics.json), study folders (results.json) or analyze output folders."
    ),
    out: Path = typer.Option(None, "--out", help="Where to write the report (default: FOLDER/report)."),
    map_method: str = typer.Option("auto", "--map", help="2-D map: auto (UMAP if installed), umap or pca."),
) -> None:
    """Write FOLDER/report/index.html with the figures embedded; several folders: one comparison page."""
    from rich.console import Console

    from dimcollapse.errors import ConfigError

    if map_method not in ("auto", "umap", "pca"):
        raise ConfigError(f"unknown --map '{map_method}'. Valid: auto, umap, pca.")
    if len(folders) > 1 or _is_analyze_output(folders[0]):
        from dimcollapse.report.compare import build_comparison

        page = build_comparison(folders, out if out is not None else folders[0].parent / "compare")
    else:
        from dimcollapse.report.build import build_report

        page = build_report(folders[0], out, map_method)
    Console().print(f"report: {page}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
