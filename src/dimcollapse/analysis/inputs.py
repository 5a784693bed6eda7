"""Inputs of ``analyze --model``: a registered dataset, an image folder or a tensor file, streamed in batches.

``load_inputs(data, limit, train, key, decode_size, channels)`` -> :class:`Inputs` (``n`` rows, labels if
known, ``batches(batch_size, num_workers)``). An image folder is decoded lazily at ``decode_size`` (the
model's input size), ``limit`` files first, in batches (DataLoader workers): memory is one batch, not the
folder. A registered dataset and a tensor file are in memory already and are sliced.

:class:`Preprocess` turns raw rows into model input: uint8 images (N, C, H, W) are resized to
``image_size``, scaled to [0, 1] and normalised with ``mean`` / ``std`` (the model's own statistics when
its checkpoint or pretrained config has them, else the dataset's, else 0.5); ``channels`` repeats grey
images for 3-channel models. Float rows are used as they are.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dimcollapse.errors import ConfigError, InputError

DEFAULT_DECODE_SIZE = 224


@dataclass(frozen=True)
class Preprocess:
    """How raw uint8 images become model input (see the module docstring); None: keep / dataset's."""

    image_size: int | None = None
    channels: int | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    dataset: str | None = None

    def __call__(self, x: Tensor) -> Tensor:
        """Model input of a raw batch: float rows as they are, images normalised."""
        if x.dtype != torch.uint8:
            return x.float()
        from dimcollapse.data.views import eval_transform

        if self.channels is not None and self.channels != x.shape[1]:
            if x.shape[1] != 1:
                raise ConfigError(
                    f"the model takes {self.channels}-channel images but the data has {x.shape[1]} "
                    "channels; only grey images are repeated to 3 channels. Pass --channels to match."
                )
            x = x.repeat(1, self.channels, 1, 1)
        stats = self.mean is None and self.std is None
        return eval_transform(
            x,
            mean=self.mean,
            std=self.std,
            image_size=self.image_size,
            dataset=self.dataset if stats and self.channels in (None, x.shape[1]) else None,
        )


def stack_images(items: Sequence[tuple[Tensor, int]]) -> Tensor:
    """A batch of decoded images without their labels (module level: spawned workers unpickle it)."""
    return torch.stack([img for img, _ in items])


@dataclass
class Inputs:
    """Raw model inputs: ``n`` rows streamed by ``batches``, labels if known, a name."""

    name: str
    n: int
    labels: np.ndarray | None
    dataset: str | None = None
    x: Tensor | None = None  # in memory (a dataset or a tensor file)
    folder: Any = None  # a lazily decoded ImageFolderDataset, else None

    def batches(
        self, batch_size: int, num_workers: int = 0, stop: int | None = None, context: str | None = None
    ) -> Iterator[Tensor]:
        """Raw batches of rows 0 .. ``stop`` (default all), ``batch_size`` rows each; a folder is decoded
        by ``num_workers`` processes (started by ``context``: fork, spawn, forkserver; default the
        platform's), in order."""
        end = self.n if stop is None else min(stop, self.n)
        if self.x is not None:
            for start in range(0, end, batch_size):
                yield self.x[start : min(end, start + batch_size)]
            return
        from torch.utils.data import DataLoader, Subset

        loader = DataLoader(
            Subset(self.folder, range(end)),
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=stack_images,
            multiprocessing_context=context if num_workers > 0 else None,
        )
        yield from loader


def _dataset_inputs(name: str, train: bool, limit: int | None) -> Inputs:
    import dimcollapse.data  # noqa: F401  (registers the datasets)
    from dimcollapse.registry import build

    ds = build("dataset", name, train=train)
    if hasattr(ds, "to_memory") and not hasattr(ds, "images"):
        ds = ds.to_memory()
    images, labels = ds.images, ds.labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    split = "train" if train else "test"
    return Inputs(f"{name}/{split}", int(images.shape[0]), labels.numpy(), name, x=images)


def _folder_inputs(p: Path, train: bool, limit: int | None, size: int, channels: int) -> Inputs:
    """A folder of class subfolders (or with train/ val/ splits), decoded lazily at ``size``."""
    from dimcollapse.data.image_folder import ImageFolderDataset

    split = any((p / d).is_dir() for d in ("train", "val", "validation", "test"))
    ds = ImageFolderDataset(p, train or not split, image_size=size, channels=channels)
    if limit is not None:  # cut the file list before anything is decoded
        ds.samples = ds.samples[:limit]
        ds.labels = ds.labels[:limit]
    name = f"{p.name}/{'train' if train or not split else 'val'}" if split else p.name
    return Inputs(name, len(ds.samples), ds.labels.numpy(), None, folder=ds)


def _file_inputs(p: Path, key: str | None, limit: int | None) -> Inputs:
    from dimcollapse.analysis.loading import read_array

    arr = np.asarray(read_array(p, key))
    if arr.ndim < 2 or arr.dtype.kind not in "uif":
        raise InputError(
            f"'{p}' holds an array of shape {arr.shape} ({arr.dtype}); pass model inputs "
            "(N x C x H x W images or N x F features)."
        )
    x = torch.from_numpy(arr if arr.dtype == np.uint8 else arr.astype(np.float32))
    x = x[:limit] if limit is not None else x
    return Inputs(p.stem, int(x.shape[0]), None, None, x=x)


def check_data_path(data: str) -> None:
    """Refuse a --data path that cannot be read as a whole (a FIFO, a device, a socket) before reading."""
    p = Path(data)
    try:
        mode = p.stat().st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InputError(
            f"--data '{p}' is not a regular file or folder (a pipe, device or socket); save the inputs "
            "to a file and pass that."
        )


def load_inputs(
    data: str,
    limit: int | None = None,
    train: bool = False,
    key: str | None = None,
    decode_size: int | None = None,
    channels: int | None = None,
) -> Inputs:
    """``data``: a registered dataset name, an image folder, or a tensor file (.pt .npy .npz .safetensors)."""
    check_data_path(data)
    p = Path(data)
    if p.is_dir():
        return _folder_inputs(p, train, limit, decode_size or DEFAULT_DECODE_SIZE, 1 if channels == 1 else 3)
    if p.is_file():
        return _file_inputs(p, key, limit)
    import dimcollapse.data  # noqa: F401
    from dimcollapse.registry import names

    if data in names("dataset"):
        return _dataset_inputs(data, train, limit)
    raise InputError(
        f"--data '{data}' is neither a file, a folder nor a registered dataset "
        f"({', '.join(names('dataset'))}). "
        "Pass a dataset name, an image folder (one subfolder per class) or a tensor file."
    )


__all__ = ["DEFAULT_DECODE_SIZE", "Inputs", "Preprocess", "check_data_path", "load_inputs"]
