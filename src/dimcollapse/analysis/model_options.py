"""The options of one ``analyze --model`` call as one object, checked before any input is read.

``ModelOptions(...).validated()`` raises ConfigError / InputError for every value that cannot work
(a non-positive ``limit`` or ``batch_size``, an unknown ``pool`` / ``map_method`` / ``device``, a
``mean`` / ``std`` of the wrong length or a zero std, ``k < 2``, a missing model or labels file, a
pipe as data) before the model or the data is touched and before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dimcollapse.errors import ConfigError, InputError

MAP_METHODS = ("auto", "umap", "pca", "none")


@dataclass(frozen=True)
class ModelOptions:
    """Everything ``analyze_model`` needs (see ``analysis/model.py``)."""

    model: str
    data: str
    out: Path = Path("runs/analyze")
    arch: str | None = None
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)
    trust_pickle: bool = False
    layers: Sequence[str] | None = None
    embed: str | None = None
    output: str | None = None
    pool: str | None = None
    limit: int | None = None
    batch_size: int = 256
    num_workers: int = 0
    device: str = "cpu"
    image_size: int | None = None
    channels: int | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    key: str | None = None
    labels: str | None = None
    k: int = 20
    feature_points: int = 2000
    train_split: bool = False
    figures: bool = True
    progress: bool = True
    map_method: str = "auto"

    def replace(self, **changes: Any) -> ModelOptions:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def validated(self) -> ModelOptions:
        """Self, after every check of the module docstring (raises on the first problem)."""
        _positive("--limit", self.limit, "all rows: omit --limit")
        _positive("--batch-size", self.batch_size, "e.g. --batch-size 256")
        _positive("--feature-points", self.feature_points, "e.g. 2000")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ConfigError(f"--num-workers must be >= 0, got {self.num_workers!r}.")
        if self.image_size is not None and (not isinstance(self.image_size, int) or self.image_size < 2):
            raise ConfigError(f"--image-size must be an integer >= 2, got {self.image_size!r}.")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"--channels must be 1 or 3, got {self.channels!r}.")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 2:
            raise ConfigError(f"--k must be an integer >= 2 (neighbours for LID), got {self.k!r}.")
        if self.map_method not in MAP_METHODS:
            raise ConfigError(f"unknown --map '{self.map_method}'. Valid: {', '.join(MAP_METHODS)}.")
        _check_pool(self.pool)
        _check_stats(self.mean, self.std)
        _check_device(self.device)
        _check_model_path(self.model)
        if self.data is None or not str(self.data):
            raise InputError(
                "--model needs --data: a dataset name (fashion_mnist), an image folder or a tensor file."
            )
        from dimcollapse.analysis.inputs import check_data_path

        check_data_path(self.data)
        if self.labels is not None and not Path(self.labels).is_file():
            raise InputError(f"labels file '{self.labels}' does not exist. Check --labels.")
        return self


def _positive(flag: str, value: int | None, hint: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{flag} must be a positive integer, got {value!r} ({hint}).")


def _check_pool(pool: str | None) -> None:
    from dimcollapse.analysis.embedding import POOLS

    if pool is not None and pool not in POOLS:
        raise ConfigError(f"unknown --pool '{pool}'. Valid: {', '.join(POOLS)}.")


def _check_stats(mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
    for flag, values in (("--mean", mean), ("--std", std)):
        if values is None:
            continue
        if len(values) not in (1, 3) or not all(math.isfinite(v) for v in values):
            raise ConfigError(f"{flag} takes 1 or 3 finite numbers (e.g. 0.485,0.456,0.406), got {values}.")
    if std is not None and any(v <= 0 for v in std):
        raise ConfigError(f"--std values must be > 0, got {list(std)}.")


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device '{device}' is not a device name; pass cpu, cuda or cuda:N.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU is available here; pass --device cpu.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) here.")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device '{device}' is not supported; pass cpu or cuda.")


def _check_model_path(model: str) -> None:
    """A file or a folder must exist and be regular; names that are not paths may be Hub ids or timm:."""
    p = Path(model)
    try:
        mode = p.stat().st_mode
    except OSError:
        return  # not a path: the loader decides (a hub id, timm:NAME, torchvision:NAME) or says it is missing
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InputError(f"--model '{p}' is not a regular file or folder (a pipe, device or socket).")


__all__ = ["MAP_METHODS", "ModelOptions"]
