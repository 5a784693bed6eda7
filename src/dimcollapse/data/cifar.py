"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) in the binary or the python (pickle) format, 32x32 RGB.

Binary: records of <label byte(s)><3072 pixel bytes> (CIFAR-100: coarse then fine label), pixels as 1024 R,
1024 G, 1024 B, each 32x32 row-major. Python: dicts with b"data" uint8 [N, 3072] and b"labels" (CIFAR-10)
or b"fine_labels" / b"coarse_labels" (CIFAR-100), read with the restricted unpickler of safe_pickle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dimcollapse.data.base import InMemoryDataset
from dimcollapse.data.paths import find_dir
from dimcollapse.data.safe_pickle import load_cifar_pickle
from dimcollapse.errors import ConfigError, InputError
from dimcollapse.registry import register

PIXELS = 3 * 32 * 32
DEFAULT_ROOTS: dict[str, list[str | Path]] = {"cifar10": [], "cifar100": []}
SUBDIRS = {
    "cifar10": ("cifar-10-batches-bin", "cifar-10-batches-py", "cifar10", "cifar-10"),
    "cifar100": ("cifar-100-binary", "cifar-100-python", "cifar100", "cifar-100"),
}
FILES = {  # (binary files, python files) per split
    ("cifar10", True): (
        [f"data_batch_{i}.bin" for i in range(1, 6)],
        [f"data_batch_{i}" for i in range(1, 6)],
    ),
    ("cifar10", False): (["test_batch.bin"], ["test_batch"]),
    ("cifar100", True): (["train.bin"], ["train"]),
    ("cifar100", False): (["test.bin"], ["test"]),
}
ARCHIVE = {"cifar10": "cifar-10", "cifar100": "cifar-100"}


def how_to_get(name: str) -> str:
    """Instructions for getting the CIFAR archives."""
    a = ARCHIVE[name]
    return (
        f"Download {a}-binary.tar.gz (or {a}-python.tar.gz) from https://www.cs.toronto.edu/~kriz/cifar.html "
        "and extract it (the folder it creates may be the root or inside it)."
    )


def read_binary(
    path: Path, label_bytes: int, label_index: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch -> (uint8 [N, 3, 32, 32], int64 labels); size and label range checked."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}.") from None
    record = label_bytes + PIXELS
    if raw.size == 0 or raw.size % record:
        raise InputError(
            f"{path}: {raw.size} bytes is not a whole number of {record}-byte CIFAR records "
            f"({raw.size // record} full records, {raw.size % record} bytes left): the file is truncated or "
            "not a CIFAR binary batch."
        )
    rows = raw.reshape(-1, record)
    labels = rows[:, label_index].astype(np.int64)
    if int(labels.max()) >= num_classes:
        raise InputError(
            f"{path}: label {int(labels.max())} out of range 0..{num_classes - 1} "
            f"(record {int(np.argmax(labels >= num_classes))}); not a valid CIFAR binary batch."
        )
    return rows[:, label_bytes:].reshape(-1, 3, 32, 32), labels


def read_python(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One python-format batch -> (uint8 [N, 3, 32, 32], int64 labels); keys, shapes and counts checked."""
    batch = load_cifar_pickle(path)
    missing = [k for k in ("data", label_key) if k not in batch]
    if missing:
        raise InputError(
            f"{path}: not a CIFAR batch: missing key(s) {', '.join(missing)} "
            f"(found {', '.join(sorted(batch)) or 'none'})."
        )
    data: Any = batch["data"]
    labels_raw: Any = batch[label_key]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != PIXELS
    ):
        shape = getattr(data, "shape", type(data).__name__)
        raise InputError(f"{path}: 'data' must be a uint8 array [N, {PIXELS}], got {shape}.")
    try:
        labels = np.asarray(labels_raw, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{path}: '{label_key}' must be a list of integers.") from None
    if labels.shape[0] != data.shape[0]:
        raise InputError(f"{path}: count mismatch: {data.shape[0]} images but {labels.shape[0]} labels.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise InputError(
            f"{path}: labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}."
        )
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar(
    name: str, root: str | os.PathLike[str] | None, train: bool, label_type: str = "fine"
) -> tuple[np.ndarray, np.ndarray, int, Path]:
    """Find and read every batch of a split; binary files win when both formats are present."""
    bin_files, py_files = FILES[(name, bool(train))]
    pretty = "CIFAR-10" if name == "cifar10" else "CIFAR-100"
    directory = find_dir(
        pretty, root, [(bin_files[0], py_files[0])], SUBDIRS[name], DEFAULT_ROOTS[name], how_to_get(name)
    )
    binary = (directory / bin_files[0]).is_file()
    files = [directory / f for f in (bin_files if binary else py_files)]
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise InputError(f"{pretty} is incomplete: missing {', '.join(absent)}. {how_to_get(name)}")
    if name == "cifar10":
        num_classes, label_bytes, label_index, key = 10, 1, 0, "labels"
    elif label_type in ("fine", "coarse"):
        num_classes = 100 if label_type == "fine" else 20
        label_bytes, label_index, key = 2, (1 if label_type == "fine" else 0), f"{label_type}_labels"
    else:
        raise ConfigError(f"cifar100 label_type must be 'fine' or 'coarse', got {label_type!r}.")
    parts = [
        read_binary(f, label_bytes, label_index, num_classes) if binary else read_python(f, key, num_classes)
        for f in files
    ]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return images, labels, num_classes, files[0]


@register("dataset", "cifar10")
def cifar10(
    root: str | os.PathLike[str] | None = None, train: bool = True, fraction: float = 1.0, seed: int = 0
) -> InMemoryDataset:
    """CIFAR-10 as uint8 [N, 3, 32, 32], 10 classes (50,000 train / 10,000 test), binary or python format."""
    images, labels, k, first = load_cifar("cifar10", root, train)
    return InMemoryDataset(
        images, labels, k, "cifar10", fraction=fraction, seed=seed, source=str(first.parent)
    )


@register("dataset", "cifar100")
def cifar100(
    root: str | os.PathLike[str] | None = None,
    train: bool = True,
    fraction: float = 1.0,
    seed: int = 0,
    label_type: str = "fine",
) -> InMemoryDataset:
    """CIFAR-100 as uint8 [N, 3, 32, 32] with 100 fine (or 20 coarse) classes, binary or python format."""
    images, labels, k, first = load_cifar("cifar100", root, train, label_type)
    return InMemoryDataset(
        images, labels, k, "cifar100", fraction=fraction, seed=seed, source=str(first.parent)
    )
