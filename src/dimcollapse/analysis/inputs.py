"""Inputs for ``analyze --model``: a registered dataset, an image folder or a tensor file, as model input.

Images (uint8 [N, C, H, W]) are scaled and normalised like the engine's evaluation
(``data.views.eval_transform``: resize to ``image_size``, / 255, minus mean, over std, with the
dataset's statistics for a registered dataset); ``channels`` repeats grey images for 3-channel models.
A float tensor file is used as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dimcollapse.errors import ConfigError, InputError


@dataclass
class Inputs:
    """Model inputs (``x`` raw: uint8 images or float features), labels if known, and a name."""

    x: Tensor
    labels: np.ndarray | None
    name: str
    dataset: str | None = None

    def batch(self, start: int, stop: int, image_size: int | None, channels: int | None) -> Tensor:
        """Rows start:stop as model input (images normalised; see the module docstring)."""
        x = self.x[start:stop]
        if x.dtype != torch.uint8:
            return x.float()
        from dimcollapse.data.views import eval_transform

        if channels is not None and channels != x.shape[1]:
            if x.shape[1] != 1:
                raise ConfigError(
                    f"--channels {channels}: the images have {x.shape[1]} channels; only "
                    "grey images can be repeated to 3 channels."
                )
            x = x.repeat(1, channels, 1, 1)
        return eval_transform(x, image_size=image_size, dataset=self.dataset if channels is None else None)


def _dataset_inputs(name: str, root: Path | None, train: bool, limit: int | None) -> Inputs:
    import dimcollapse.data  # noqa: F401  (registers the datasets)
    from dimcollapse.registry import build

    kw = {"root": root, "train": train} if root is not None else {"train": train}
    ds = build("dataset", name, **kw)
    if hasattr(ds, "to_memory") and not hasattr(ds, "images"):
        ds = ds.to_memory()
    images, labels = ds.images, ds.labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return Inputs(
        images, labels.numpy(), f"{name}/{'train' if train else 'test'}", name if root is None else None
    )


def load_inputs(data: str, limit: int | None = None, train: bool = False, key: str | None = None) -> Inputs:
    """``data``: a registered dataset name, an image folder, or a tensor file (.pt .npy .npz .safetensors)."""
    p = Path(data)
    if p.is_dir():  # a bare folder of class subfolders is one split (the dataset calls it "train")
        split = any((p / d).is_dir() for d in ("train", "val", "validation", "test"))
        inputs = _dataset_inputs("image_folder", p, train or not split, limit)
        inputs.name = inputs.name if split else p.name
        return inputs
    if p.is_file():
        from dimcollapse.analysis.loading import read_array

        arr = np.asarray(read_array(p, key))
        if arr.ndim < 2 or arr.dtype.kind not in "uif":
            raise InputError(
                f"'{p}' holds an array of shape {arr.shape} ({arr.dtype}); pass model inputs "
                "(N x C x H x W images or N x F features)."
            )
        x = torch.from_numpy(arr if arr.dtype == np.uint8 else arr.astype(np.float32))
        return Inputs(x[:limit] if limit else x, None, p.stem)
    import dimcollapse.data  # noqa: F401
    from dimcollapse.registry import names

    if data in names("dataset"):
        return _dataset_inputs(data, None, train, limit)
    raise InputError(
        f"--data '{data}' is neither a file, a folder nor a registered dataset "
        f"({', '.join(names('dataset'))}). "
        "Pass a dataset name, an image folder (one subfolder per class) or a tensor file."
    )


__all__ = ["Inputs", "load_inputs"]
