"""A run to launch: its id, resolved config file, folder and the resources its trainer block asks for."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dimcollapse.errors import ConfigError

DONE = "metrics.json"
LAST = Path("checkpoints") / "last.ckpt"

# environment a launched run reads for its record (the training side writes them into metrics.json)
ENV_EXECUTOR = "DIMCOLLAPSE_EXECUTOR"
ENV_JOB_ID = "DIMCOLLAPSE_JOB_ID"
ENV_ARRAY_INDEX = "DIMCOLLAPSE_ARRAY_INDEX"
ENV_REQUEUES = "DIMCOLLAPSE_REQUEUE_COUNT"


@dataclass(frozen=True)
class RunTask:
    """One run: ``dimcollapse train <config_file> --out <out_dir>`` with ``devices`` per node."""

    run_id: str
    config_file: Path
    out_dir: Path
    log_file: Path
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    num_threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def uses_gpu(self) -> bool:
        """True when the run trains on CUDA devices."""
        return self.accelerator in ("gpu", "cuda")


def device_count(devices: Any, where: str) -> int:
    """A run's device count from ``trainer.devices`` (n, or a list of indices); -1 / 'auto' are refused."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str) and devices.strip().isdigit():
        return int(devices)
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        return devices
    raise ConfigError(
        f"{where}: trainer.devices = {devices!r} does not say how many devices the run needs; the launcher "
        "gives each run its own devices: set trainer.devices to a count (e.g. trainer.devices=1)."
    )


def make_task(
    run_id: str, config_file: Path, out_dir: Path, log_file: Path, trainer: dict[str, Any]
) -> RunTask:
    """The launch task of a run whose resolved ``trainer`` block is given."""
    return RunTask(
        run_id,
        config_file,
        out_dir,
        log_file,
        accelerator=str(trainer.get("accelerator", "cpu")),
        devices=device_count(trainer.get("devices", 1), f"run '{run_id}'"),
        num_nodes=int(trainer.get("num_nodes", 1) or 1),
        num_threads=trainer.get("num_threads"),
    )


def is_done(out_dir: Path) -> bool:
    """A run is finished when its folder holds metrics.json."""
    return (out_dir / DONE).is_file()


def train_argv(config_file: Path, out_dir: Path, overrides: list[str] | None = None) -> list[str]:
    """The ``dimcollapse train`` arguments of a run; ``--resume`` when its folder holds an interrupted run."""
    argv = ["train", str(config_file), *(overrides or []), "--out", str(out_dir)]
    if (out_dir / LAST).is_file() and not is_done(out_dir):
        argv.append("--resume")
    return argv


def clear_unstarted(out_dir: Path) -> None:
    """Remove a run folder killed before its first checkpoint (no last.ckpt, no metrics.json)."""
    if out_dir.exists() and not (out_dir / LAST).is_file() and not is_done(out_dir):
        shutil.rmtree(out_dir)
