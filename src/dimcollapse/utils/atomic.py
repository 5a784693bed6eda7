"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename.

A reader never sees a half-written checkpoint, metrics.json or figure, and a crash leaves the
previous version in place. The temporary file is named ``.<name>.<pid>.<random>.tmp``; a writer killed
before the rename leaves it behind, and ``remove_stale_temp_files`` deletes those whose process is gone.
A full disk raises InputError naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from dimcollapse.errors import DiskFullError, InputError


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and parents) if needed and check that files can be written there."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create output folder '{p}': {e.strerror}. Choose another --out.") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise InputError(f"output folder '{p}' is not writable. Choose another --out or fix its permissions.")
    return p


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it onto ``path`` on success."""
    target = Path(path)
    ensure_writable_dir(target.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise _disk_error(e, target) from None
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode of a new file
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            raise _disk_error(e, target) from None
        raise


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _disk_error(e: OSError, target: Path) -> Exception:
    """InputError for a full disk / quota naming the file; other OS errors unchanged."""
    if e.errno in DISK_FULL:
        return DiskFullError(
            f"no space left on the device while writing '{target}' ({e.strerror}); free disk space or "
            "choose another --out. The previous version of the file is intact."
        )
    return e


_TEMP = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


def process_alive(pid: int) -> bool:
    """True when process ``pid`` exists on this host (also when it belongs to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(folder: str | os.PathLike[str], max_age_s: float = 3600.0) -> list[Path]:
    """Delete ``.<name>.<pid>.*.tmp`` files of writers that are no longer running (same host), and older
    temp files without a pid after ``max_age_s``; returns the removed paths."""
    import time

    d = Path(folder)
    if not d.is_dir():
        return []
    removed = []
    for p in d.glob(".*.tmp"):
        m = _TEMP.match(p.name)
        try:
            stale = (not process_alive(int(m.group(1)))) if m else time.time() - p.stat().st_mtime > max_age_s
            if stale and p.is_file():
                p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (NaN/Inf are written as null)."""
    atomic_write_text(path, json.dumps(_json_safe(obj), indent=2, sort_keys=True) + "\n")


class _WriteErrors:
    """A binary file that remembers the OSError of a failed write: torch's zip writer turns it into a
    RuntimeError ("unexpected pos ..."), which would hide a full disk."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh: IO[bytes] = fh
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.fh.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)


def atomic_save(path: str | os.PathLike[str], writer: Callable[[IO[bytes]], None]) -> None:
    """Call ``writer(fh)`` on a binary temp file and rename it onto ``path`` (e.g. torch.save); a write
    that failed inside the writer (torch.save's RuntimeError) is raised as its OSError (DiskFullError)."""
    with atomic_open(path, "wb") as fh:
        rec = _WriteErrors(fh)
        try:
            writer(rec)  # type: ignore[arg-type]
        except Exception as e:
            if rec.error is not None and not isinstance(e, OSError):
                raise rec.error from None
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_safe(obj: Any) -> Any:
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return _json_safe(obj.item())
    if hasattr(obj, "tolist"):
        return _json_safe(obj.tolist())
    return obj
