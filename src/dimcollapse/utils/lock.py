"""A lock file that lets one process own a folder (a study, a training run): it records the holder.

    with folder_lock(study_dir / ".study.lock", "study"):
        ...

The file appears with its holder already written (a private temp file hard-linked to the lock path, so a
reader never sees it empty) and records pid, host, start time and, under SLURM, the job id and restart
count. A second process finds the file and is refused with one line naming the holder. A lock whose holder
is gone is stale and is replaced with a warning: same host and pid no longer running, or the same SLURM job
with a lower restart count (the job's life before a requeue, possibly on another node). Replacing a stale
lock happens under an flock of the folder itself, so two processes cannot both take it over. A lock of another
host cannot be checked; its message says how to remove it when that host no longer runs it.
"""

from __future__ import annotations

import contextlib
import fcntl
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


def _restart_count() -> int:
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    except ValueError:
        return 0


def holder_record() -> dict[str, Any]:
    """This process as a lock holder: pid, host, start time, SLURM job id and restart count (or None)."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID") or None,
        "restart_count": _restart_count(),
    }


def is_stale(holder: dict[str, Any] | None) -> bool:
    """True when the holder cannot be running: garbage file; on this host with its pid gone; or the same
    SLURM job as this process in an earlier life (lower restart count: the job was requeued since)."""
    if holder is None:
        return True
    try:
        pid = int(holder.get("pid", -1))
        restarts = int(holder.get("restart_count") or 0)
    except (TypeError, ValueError):
        return True
    job = os.environ.get("SLURM_JOB_ID")
    if job and holder.get("slurm_job_id") == job and restarts < _restart_count():
        return True
    return holder.get("host") == socket.gethostname() and not process_alive(pid)


def _create(path: Path, content: str) -> bool:
    """Create ``path`` holding ``content`` in one step (False if it exists): a reader never sees it empty.

    The content goes into a private temporary file (named like utils.atomic's, so a killed writer's
    leftover is cleaned as stale), which is then hard-linked to ``path``: ``link`` fails when ``path``
    exists, like O_EXCL, but the file appears complete.
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


@contextlib.contextmanager
def _guard(path: Path) -> Iterator[None]:
    """An exclusive flock on the lock's folder (serialises stale take-overs; writes nothing)."""
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _take_over_if_stale(path: Path) -> dict[str, Any] | None:
    """Under the guard: remove ``path`` if its holder is stale (None), else return the live holder."""
    with _guard(path):
        holder = read_lock(path)
        if holder is None and not path.exists():
            return None  # released meanwhile: try to create it again
        if not is_stale(holder):
            return holder
        log.warning("removing stale lock %s (holder %s is not running)", path, holder)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None


def acquire(path: Path, what: str) -> None:
    """Create the lock file ``path`` with this process as holder, or raise InputError naming the holder."""
    me = json.dumps(holder_record())
    for _ in range(3):
        if _create(path, me):
            return
        holder = _take_over_if_stale(path)
        if holder is None:
            continue
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
