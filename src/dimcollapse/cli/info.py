"""``dimcollapse info``: versions, devices and every registered component name."""

from __future__ import annotations

import platform

import typer
from rich.console import Console
from rich.table import Table


def info() -> None:
    """Print versions, available devices and the registered component names."""
    import torch

    import dimcollapse
    from dimcollapse.registry import KINDS, names

    console = Console()
    table = Table(title="dimcollapse", show_header=False)
    table.add_row("dimcollapse", dimcollapse.__version__)
    table.add_row("python", platform.python_version())
    table.add_row("torch", torch.__version__)
    cuda = f"{torch.cuda.device_count()} device(s)" if torch.cuda.is_available() else "not available"
    table.add_row("cuda", cuda)
    for kind in KINDS:
        table.add_row(f"{kind}s", ", ".join(names(kind)) or "-")
    console.print(table)
    console.print(metric_table())


def metric_table() -> Table:
    """Every catalogue metric: key, label, centred or not, and the definition it equals (docs/metrics.md)."""
    from dimcollapse.diagnostics.catalogue import METRICS

    table = Table(title="metrics (docs/metrics.md)")
    for col in ("key", "metric", "centred", "definition"):
        table.add_column(col, overflow="fold")
    centred = {True: "yes", False: "no", None: "n/a"}
    for spec in METRICS:
        table.add_row(spec.key, spec.label, centred[spec.centred], spec.definition or "-")
    return table


def register(app: typer.Typer) -> None:
    app.command("info")(info)
