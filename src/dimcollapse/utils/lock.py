"""A lock file that lets one process own a folder (a study): it records the holder's pid, host and start.

    with folder_lock(study_dir / ".study.lock", "study"):
        ...

A second process finds the file and is refused with one line naming the holder. A lock whose holder
is gone (same host, pid no longer running) is stale: it is replaced and a warning is logged. A lock of
another host cannot be checked; its message says how to remove it when that host no longer runs it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dimcollapse.errors import InputError
from dimcollapse.utils.atomic import process_alive

log = logging.getLogger("dimcollapse.lock")


def read_lock(path: Path) -> dict[str, Any] | None:
    """The holder recorded in ``path`` (None when the file is missing or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_stale(holder: dict[str, Any] | None) -> bool:
    """True when the holder is on this host and its process no longer runs (or the file is garbage)."""
    if holder is None:
        return True
    try:
        pid = int(holder.get("pid", -1))
    except (TypeError, ValueError):
        return True
    return holder.get("host") == socket.gethostname() and not process_alive(pid)


def _create(path: Path, content: str) -> bool:
    """Create ``path`` holding ``content`` in one step (False if it exists): a reader never sees it empty.

    The content goes into a private temporary file first, which is then hard-linked to ``path``
    (``link`` fails when ``path`` exists, like O_EXCL, but the file appears complete).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    with open(tmp, "x") as fh:
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def acquire(path: Path, what: str) -> None:
    """Create the lock file ``path`` with its holder atomically or raise InputError naming the holder."""
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for _ in range(3):
        if _create(path, json.dumps(me)):
            return
        holder = read_lock(path)
        if is_stale(holder):
            log.warning("removing stale lock %s (holder %s is not running)", path, holder)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        assert holder is not None
        raise InputError(
            f"{what} '{path.parent}' is in use by process {holder.get('pid')} on host "
            f"{holder.get('host')} (since {holder.get('started')}, lock {path}); wait for it to finish, "
            "or delete the lock file if that process no longer runs."
        ) from None
    raise InputError(f"cannot take the lock {path}; another process keeps replacing it. Retry later.")


def release(path: Path) -> None:
    """Remove the lock file if this process holds it."""
    holder = read_lock(path)
    if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


_HELD: set[Path] = set()  # locks this process holds (nested folder_lock calls are re-entrant)


@contextlib.contextmanager
def folder_lock(path: str | os.PathLike[str], what: str = "folder") -> Iterator[None]:
    """Hold the lock file ``path`` for the duration of the block (re-entrant within one process)."""
    p = Path(path).resolve()
    if p in _HELD:
        yield
        return
    p.parent.mkdir(parents=True, exist_ok=True)
    acquire(p, what)
    _HELD.add(p)
    try:
        yield
    finally:
        _HELD.discard(p)
        release(p)
