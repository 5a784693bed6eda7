"""``dimcollapse report FOLDER [FOLDER ...]``: the self-contained HTML collapse report.

One run or study folder gives the full report; several folders (runs, studies, ``analyze`` output,
monitor.json folders, from anywhere), checkpoints of a run, or one ``analyze`` / monitor folder give a
one-page comparison (``report/compare.py``); an unreadable one among several is skipped with a warning.
"""

from __future__ import annotations

from pathlib import Path

import typer


def _is_comparison(path: Path) -> bool:
    """True for what only the comparison page shows: `analyze` output (an embedding's record), a folder
    with only monitor.json (CollapseMonitor, Tracker) or a checkpoint file; run and study folders (and
    anything else, which the full report names as the error) get the full report."""
    from dimcollapse.errors import InputError
    from dimcollapse.records import EmbeddingRecord, read_record

    if path.is_file():
        return path.suffix == ".ckpt"
    if (path / "results.json").is_file():
        return False
    if not (path / "metrics.json").is_file():
        return (path / "monitor.json").is_file()
    try:
        return isinstance(read_record(path / "metrics.json"), EmbeddingRecord)
    except InputError:
        return False


def report(
    folders: list[Path] = typer.Argument(
        ...,
        help="Run folders (metrics.json), study folders (results.json), analyze output folders, "
        "monitor.json folders or checkpoints (.ckpt) of a run.",
    ),
    out: Path = typer.Option(None, "--out", help="Where to write the report (default: FOLDER/report)."),
    map_method: str = typer.Option("auto", "--map", help="2-D map: auto (UMAP if installed), umap or pca."),
) -> None:
    """Write FOLDER/report/index.html with the figures embedded; several folders: one comparison page."""
    from rich.console import Console

    from dimcollapse.errors import ConfigError

    if map_method not in ("auto", "umap", "pca"):
        raise ConfigError(f"unknown --map '{map_method}'. Valid: auto, umap, pca.")
    console = Console()

    def say(line: str) -> None:  # each run's verdict (and N <= D warning) as plain text
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    if len(folders) > 1 or _is_comparison(folders[0]):
        from dimcollapse.report.compare import build_comparison

        page = build_comparison(folders, out if out is not None else folders[0].parent / "compare", say=say)
    else:
        from dimcollapse.report.build import build_report

        page = build_report(folders[0], out, map_method, say=say)
    console.print(f"report: {page}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
