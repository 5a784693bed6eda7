"""The one exception type users can cause, and helpers that raise it with a useful message."""

from __future__ import annotations

import re


class DimCollapseError(Exception):
    """A problem the user can fix: the message says what was wrong and what to do.

    The CLI prints it as one line without a traceback and exits with ``exit_code`` (2).
    """

    exit_code: int = 2


class InputError(DimCollapseError):
    """Bad data: missing/corrupt file, wrong shape, NaN, too few rows."""


class ConfigError(DimCollapseError):
    """Bad configuration: unknown name, unknown key, value out of range."""


class DiskFullError(InputError):
    """No space left on the device (or quota exceeded) while writing a file."""


class DivergedError(InputError):
    """Training produced NaN/Inf at ``step`` (in ``what``); the run adds the checkpoint and the fix."""

    def __init__(self, message: str, step: int = -1, what: str = "") -> None:
        super().__init__(message)
        self.step, self.what = int(step), what


class RunInterrupted(DimCollapseError):
    """Training stopped by a signal after saving a resumable checkpoint (exit 128 + signal on rank 0, 0 on
    the other ranks); ``requeued`` when the SLURM job was requeued."""

    def __init__(self, message: str, exit_code: int, requeued: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.requeued = requeued


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> ConfigError:
    """Build the error for an unknown component name, listing the valid ones."""
    listing = ", ".join(sorted(valid)) or "(none registered)"
    return ConfigError(f"unknown {kind} '{name}'. Valid {kind} names: {listing}.")


_ALLOC = re.compile(r"(?:tried to allocate|Tried to allocate) (\d+(?:\.\d+)?) ?(bytes|[KMGT]i?B)")
_ALLOC_FAILED = ("can't allocate memory", "out of memory", "Cannot allocate memory")


def allocation_failure(e: BaseException) -> str | None:
    """For a MemoryError or torch's allocation failure (a RuntimeError), the size asked for ("2980.2 GiB"
    or "" when the message has none); None for any other exception."""
    if isinstance(e, MemoryError):
        return ""
    text = str(e)
    if not isinstance(e, RuntimeError) or not any(s in text for s in _ALLOC_FAILED):
        return None
    m = _ALLOC.search(text)
    if m is None:
        return ""
    value, unit = float(m.group(1)), m.group(2)
    scale = {"bytes": 1, "KB": 2**10, "KiB": 2**10, "MB": 2**20, "MiB": 2**20, "GB": 2**30, "GiB": 2**30}
    return f"{value * scale.get(unit, 2**40) / 2**30:.1f} GiB"


_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_EXC_PREFIX = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Warning):\s*")
MAX_MESSAGE = 2000  # characters of an error line; longer text is cut (never a whole file echoed)


def one_line(message: object, limit: int = MAX_MESSAGE) -> str:
    """``message`` as one printable line: a worker's traceback reduced to its last line, ANSI codes and
    control characters removed, whitespace runs collapsed, cut to ``limit`` characters."""
    text = _ANSI.sub("", str(message))
    if "Traceback (most recent call last)" in text:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if lines:
            text = _EXC_PREFIX.sub("", lines[-1])
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RunsFailed(DimCollapseError):
    """Every run of a study failed: the study's results say why (exit status 1, not a usage error)."""

    exit_code = 1
