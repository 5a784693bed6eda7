"""One sorted file index per split, built once and read by every rank and worker (no per-rank listing).

    files, built = shared_index(split_dir, kind="class_folders")

The first process to arrive takes an exclusive ``flock`` on ``<index>.lock``, lists the split (sorted
relative paths) and writes the index atomically; every later process (other ranks, other nodes on a
shared file system, DataLoader workers, the next run) waits for the lock and reads the file. An index is
reused while its stamp holds: the split folder's path and the modification times of the split folder and
of its class folders (adding or removing a file changes its folder's time), a few thousand ``stat`` calls
instead of a listing of every file.

Where the index lives: ``index_dir`` when given, else ``<split>/../.dimcollapse_index/`` when the data
folder is writable, else ``$XDG_CACHE_HOME/dimcollapse/file_index/<hash of the split path>/`` (home is
usually shared between a cluster's nodes).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from dimcollapse.errors import InputError
from dimcollapse.utils.atomic import atomic_write_text

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
FORMAT = "dimcollapse-file-index-1"
KINDS = ("class_folders", "flat")


def is_image(name: str) -> bool:
    """True for a visible file name with an image extension."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in EXTENSIONS


def class_folder_names(split_dir: Path) -> list[str]:
    """Sorted visible subfolder names of ``split_dir`` (one per class)."""
    with os.scandir(split_dir) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def list_files(split_dir: Path, kind: str) -> list[str]:
    """Sorted image paths relative to ``split_dir``: ``<class>/<file>`` (nested allowed) or flat names."""
    if kind == "flat":
        with os.scandir(split_dir) as it:
            return sorted(e.name for e in it if e.is_file() and is_image(e.name))
    files: list[str] = []
    for cls in class_folder_names(split_dir):
        for dirpath, dirnames, filenames in os.walk(split_dir / cls):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = os.path.relpath(dirpath, split_dir)
            files.extend(f"{rel}/{f}".replace(os.sep, "/") for f in filenames if is_image(f))
    return sorted(files)


def stamp(split_dir: Path, kind: str) -> dict[str, object]:
    """What makes an index stale: the split's absolute path and the mtimes of it and its class folders."""
    times = {".": os.stat(split_dir).st_mtime_ns}
    if kind == "class_folders":
        for cls in class_folder_names(split_dir):
            times[cls] = os.stat(split_dir / cls).st_mtime_ns
    return {"format": FORMAT, "split": str(split_dir.resolve()), "kind": kind, "mtimes": times}


def index_path(split_dir: Path, index_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the index of ``split_dir`` lives (see the module docstring)."""
    name = f"{split_dir.name}.json"
    if index_dir is not None:
        return Path(index_dir) / name
    beside = split_dir.parent / ".dimcollapse_index"
    if (beside.is_dir() and os.access(beside, os.W_OK)) or os.access(split_dir.parent, os.W_OK):
        return beside / name
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha1(str(split_dir.resolve()).encode()).hexdigest()[:16]
    return cache / "dimcollapse" / "file_index" / digest / name


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read(path: Path, want: dict[str, object]) -> list[str] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("stamp") != want or not isinstance(data.get("files"), list):
        return None
    return [str(f) for f in data["files"]]


def shared_index(
    split_dir: str | os.PathLike[str],
    kind: str = "class_folders",
    index_dir: str | os.PathLike[str] | None = None,
) -> tuple[list[str], bool]:
    """(sorted relative image paths of the split, True if this process built the index, False if read)."""
    split = Path(split_dir)
    if kind not in KINDS:
        raise InputError(f"file index kind must be one of {', '.join(KINDS)}, got {kind!r}.")
    if not split.is_dir():
        raise InputError(f"{split} is not a folder; check data.root.")
    want = json.loads(json.dumps(stamp(split, kind)))  # the form it takes after a JSON round trip
    path = index_path(split, index_dir)
    files = _read(path, want)  # the common case: already built, no lock needed
    if files is not None:
        return files, False
    try:
        with _exclusive(path.with_name(path.name + ".lock")):
            files = _read(path, want)  # built by another process while this one waited
            if files is not None:
                return files, False
            files = list_files(split, kind)
            atomic_write_text(path, json.dumps({"stamp": want, "files": files}))
            return files, True
    except OSError as e:
        raise InputError(
            f"cannot write the file index {path} ({e.strerror or e}); give a writable data.kwargs.index_dir "
            "on a file system every rank sees."
        ) from None
