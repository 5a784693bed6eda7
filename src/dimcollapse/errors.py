"""The one exception type users can cause, and helpers that raise it with a useful message."""

from __future__ import annotations


class DimCollapseError(Exception):
    """A problem the user can fix: the message says what was wrong and what to do.

    The CLI prints it without a traceback and exits with status 2.
    """


class InputError(DimCollapseError):
    """Bad data: missing/corrupt file, wrong shape, NaN, too few rows."""


class ConfigError(DimCollapseError):
    """Bad configuration: unknown name, unknown key, value out of range."""


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> ConfigError:
    """Build the error for an unknown component name, listing the valid ones."""
    listing = ", ".join(sorted(valid)) or "(none registered)"
    return ConfigError(f"unknown {kind} '{name}'. Valid {kind} names: {listing}.")
