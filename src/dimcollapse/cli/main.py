"""The ``dimcollapse`` command: one Typer app, one module per command, errors without tracebacks.

Each command lives in ``dimcollapse/cli/<name>.py`` and exposes ``register(app)``; add its module
name to ``COMMANDS``. A ``DimCollapseError`` raised anywhere is printed as one line and the process
exits with status 2.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from dimcollapse.errors import DimCollapseError

try:  # typer >= 0.20 vendors click
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as _cx  # type: ignore[no-redef]

COMMANDS: list[str] = ["info", "analyze", "train", "evaluate", "simulate", "study", "report", "demo"]

app = typer.Typer(
    name="dimcollapse",
    help="Measure, explain and prevent dimensional collapse in self-supervised learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Measure, explain and prevent dimensional collapse in self-supervised learning."""


for _name in COMMANDS:
    importlib.import_module(f"dimcollapse.cli.{_name}").register(app)

_err = Console(stderr=True)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv``; return the exit status instead of exiting (for tests)."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="dimcollapse")
    except DimCollapseError as e:
        _err.print(f"[bold red]error:[/] {e}", highlight=False, markup=True)
        return 2
    except typer.Abort:
        _err.print("[bold red]aborted[/]")
        return 130
    except _cx.ClickException as e:
        e.show()
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        _err.print("[bold red]interrupted[/]")
        return 130
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv[1:]))
