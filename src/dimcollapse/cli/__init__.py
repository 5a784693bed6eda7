"""Command-line interface: thin commands that parse, load a config and call one library function."""

from dimcollapse.cli.main import app, main, run

__all__ = ["app", "main", "run"]
