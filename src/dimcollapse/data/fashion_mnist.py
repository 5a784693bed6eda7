"""Fashion-MNIST (Xiao et al. 2017) from its four IDX files (raw or .gz): 60k train / 10k test, 28x28 grey."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dimcollapse.data.base import InMemoryDataset
from dimcollapse.data.idx import read_idx
from dimcollapse.data.paths import find_dir, first_existing
from dimcollapse.errors import InputError
from dimcollapse.registry import register

DEFAULT_ROOTS: list[str | Path] = ["/usr/share/datasets/fashion-mnist"]
SUBDIRS = ("fashion-mnist", "fashion_mnist", "FashionMNIST", "FashionMNIST/raw")
FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
HOW_TO_GET = (
    "Install the Debian package dataset-fashion-mnist (puts the files in /usr/share/datasets/fashion-mnist), "
    "or download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
    "t10k-labels-idx1-ubyte.gz from the Fashion-MNIST project into one directory."
)


def load_idx_pair(
    directory: Path, image_stem: str, label_stem: str, num_classes: int
) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """Read an (images, labels) IDX pair, checking 28x28 images, equal counts and labels in range."""
    img_path = first_existing(directory, (image_stem + ".gz", image_stem))
    lbl_path = first_existing(directory, (label_stem + ".gz", label_stem))
    images = read_idx(img_path, ndim=3, dims=(None, 28, 28))
    labels = read_idx(lbl_path, ndim=1)
    if images.dtype.kind != "u" or labels.dtype.kind != "u":
        raise InputError(f"{img_path} / {lbl_path}: expected unsigned byte (type 0x08) IDX files.")
    if images.shape[0] != labels.shape[0]:
        raise InputError(
            f"count mismatch: {img_path} holds {images.shape[0]} images but {lbl_path} holds "
            f"{labels.shape[0]} labels; the files do not belong together."
        )
    if labels.size and int(labels.max()) >= num_classes:
        raise InputError(f"{lbl_path}: label {int(labels.max())} out of range 0..{num_classes - 1}.")
    return img_path, lbl_path, images, labels


@register("dataset", "fashion_mnist")
def fashion_mnist(
    root: str | os.PathLike[str] | None = None, train: bool = True, fraction: float = 1.0, seed: int = 0
) -> InMemoryDataset:
    """Fashion-MNIST as uint8 [N, 1, 28, 28] with 10 classes; search root, $DIMCOLLAPSE_DATA, the default."""
    image_stem, label_stem = FILES[bool(train)]
    directory = find_dir(
        "Fashion-MNIST",
        root,
        [(image_stem + ".gz", image_stem), (label_stem + ".gz", label_stem)],
        SUBDIRS,
        DEFAULT_ROOTS,
        HOW_TO_GET,
    )
    img_path, _, images, labels = load_idx_pair(directory, image_stem, label_stem, 10)
    return InMemoryDataset(
        images[:, None],
        labels,
        10,
        "fashion_mnist",
        fraction=fraction,
        seed=seed,
        source=str(img_path),
    )
