"""The files of a run folder and what a new ``train`` into it does: start, resume by itself, or refuse.

    DIR/config.yaml  metrics.json  progress.json  monitor.json  .train.lock  checkpoints/{last,final}.ckpt

- no ``checkpoints/last.ckpt``: a fresh run;
- ``last.ckpt`` without ``metrics.json``: an interrupted run (a signal, a requeue, a kill): it resumes by
  itself with its own config (a differing config is refused naming the keys);
- ``last.ckpt`` and ``metrics.json``: a finished run: refused unless ``--resume`` is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dimcollapse.errors import InputError

LAST = "last.ckpt"
FINAL = "final.ckpt"
LOCK = ".train.lock"
METRICS = "metrics.json"
PROGRESS = "progress.json"


def last_checkpoint(out: Path) -> Path:
    """``out/checkpoints/last.ckpt``."""
    return out / "checkpoints" / LAST


@dataclass(frozen=True)
class FolderState:
    """What a run folder holds: its last checkpoint (size and mtime, to notice a writer) and metrics."""

    last: tuple[int, int] | None  # (size, mtime_ns) of checkpoints/last.ckpt, None when absent
    finished: bool  # metrics.json exists

    @classmethod
    def of(cls, out: Path) -> FolderState:
        """The state of ``out`` now."""
        try:
            st = last_checkpoint(out).stat()
            last: tuple[int, int] | None = (st.st_size, st.st_mtime_ns)
        except (FileNotFoundError, NotADirectoryError):
            last = None
        return cls(last, (out / METRICS).is_file())

    @property
    def interrupted(self) -> bool:
        """A checkpoint but no final metrics: the run stopped before its end."""
        return self.last is not None and not self.finished


@dataclass(frozen=True)
class Mode:
    """How ``train`` uses the folder: ``resume`` from last.ckpt (``auto``: without the --resume flag)."""

    resume: bool
    auto: bool


def decide(out: Path, state: FolderState, resume: bool) -> Mode:
    """The mode for ``--resume`` = ``resume`` on a folder in ``state``; InputError when it cannot start."""
    last = last_checkpoint(out)
    if resume:
        if state.last is None:
            raise InputError(
                f"nothing to resume: '{last}' does not exist. Run without --resume to start training."
            )
        return Mode(resume=True, auto=False)
    if state.interrupted:
        return Mode(resume=True, auto=True)
    if state.last is not None:
        raise InputError(
            f"'{out}' already holds a run that finished ({last} and {out / METRICS}); pass --resume "
            "to continue it or choose another --out."
        )
    return Mode(resume=False, auto=False)


def check_unchanged(out: Path, before: FolderState) -> None:
    """After taking the lock: the folder is as it was when the run was planned (no writer in between)."""
    if FolderState.of(out) != before:
        raise InputError(
            f"'{out}' changed while this run was starting (another process wrote into it); nothing was "
            "written. Rerun the command: it then sees the folder as it is now."
        )
