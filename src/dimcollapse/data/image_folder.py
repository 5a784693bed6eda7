"""Image folders with one subfolder per class (ImageNet-100 layout: root/train/<class>/*, root/val/<class>/*),
read lazily with PIL and resized (shorter side to image_size, centre crop) to uint8 [C, S, S]."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from dimcollapse.data.base import InMemoryDataset, subset_indices
from dimcollapse.data.paths import candidate_dirs
from dimcollapse.errors import ConfigError, InputError, one_line
from dimcollapse.registry import register

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
SUBDIRS = ("imagenet100", "imagenet-100", "ImageNet100")
SPLIT_NAMES = {True: ("train",), False: ("val", "validation", "test")}


def class_dirs(directory: Path) -> list[Path]:
    """Sorted subfolders (hidden ones skipped): one per class."""
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _has_splits(d: Path) -> bool:
    return d.is_dir() and any((d / s).is_dir() for s in ("train", "val"))


def find_split_dir(root: str | os.PathLike[str] | None, train: bool) -> tuple[Path, Path]:
    """(dataset root, folder of class subfolders for the split); root/train or root/val, else root itself."""
    dirs = candidate_dirs(root, SUBDIRS)
    base = next((d for d in dirs if _has_splits(d)), None)  # train/ + val/ layout first
    if base is None:
        base = next((d for d in dirs if d.is_dir() and class_dirs(d)), None)  # else bare class folders
    if base is None:
        looked = "; ".join(str(d) for d in dirs) or "(nowhere: no root given and $DIMCOLLAPSE_DATA unset)"
        raise InputError(
            f"image folder not found. Looked in: {looked}. Set data.root=DIR to a folder with train/ and "
            "val/, each holding one subfolder of images per class (the ImageNet-100 layout), or set "
            "$DIMCOLLAPSE_DATA."
        )
    for name in SPLIT_NAMES[train]:
        if (base / name).is_dir():
            return base, base / name
    if train and not (base / "val").is_dir():
        return base, base  # a bare folder of class subfolders serves as the training split
    raise InputError(
        f"{base} has no {' or '.join(SPLIT_NAMES[train])}/ folder for the "
        f"{'train' if train else 'test'} split."
    )


def load_image(path: Path, image_size: int, channels: int) -> Tensor:
    """PIL image -> uint8 [C, S, S]: shorter side resized to S (bilinear), centre crop; errors name it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img_file = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(
            f"image {path} is too large to decode safely ({one_line(exc)}); the limit is "
            f"{Image.MAX_IMAGE_PIXELS} pixels (PIL.Image.MAX_IMAGE_PIXELS, a guard against decompression "
            "bombs). Shrink or remove the file."
        ) from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise InputError(f"cannot read image {path}: {exc}. Remove or replace the file.") from None
    try:
        with img_file as img:
            mode = "RGB" if channels == 3 else "L"
            img.draft(mode, (image_size, image_size))  # JPEG: decode at a reduced scale when possible
            converted = img.convert(mode)
            fitted = ImageOps.fit(converted, (image_size, image_size), method=Image.Resampling.BILINEAR)
            arr = np.asarray(fitted, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise InputError(f"cannot read image {path}: {exc}. Remove or replace the file.") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


class ImageFolderDataset(Dataset[tuple[Tensor, int]]):
    """Lazy dataset of (uint8 [C, S, S], label) over files root/<split>/<class>/<image>; classes are the
    sorted subfolder names of the training split (so train and val share labels)."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        train: bool = True,
        image_size: int = 224,
        channels: int = 3,
        fraction: float = 1.0,
        seed: int = 0,
    ) -> None:
        if channels not in (1, 3):
            raise ConfigError(f"image_folder channels must be 1 or 3, got {channels}.")
        if int(image_size) < 2:
            raise ConfigError(f"image_folder image_size must be >= 2, got {image_size}.")
        base, split_dir = find_split_dir(root, train)
        reference = base / "train" if (base / "train").is_dir() else split_dir
        self.classes: list[str] = [p.name for p in class_dirs(reference)]
        if not self.classes:
            raise InputError(
                f"{reference} has no class subfolders; put each class's images in its own folder."
            )
        index = {c: i for i, c in enumerate(self.classes)}
        samples: list[tuple[Path, int]] = []
        for cdir in class_dirs(split_dir):
            if cdir.name not in index:
                raise InputError(f"{cdir}: class '{cdir.name}' does not exist in {reference}.")
            files = sorted(p for p in cdir.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)
            samples.extend((f, index[cdir.name]) for f in files)
        if not samples:
            raise InputError(
                f"{split_dir} holds no images ({', '.join(EXTENSIONS)}) in its class subfolders."
            )
        keep = subset_indices(len(samples), fraction, seed).tolist()
        self.samples: list[tuple[Path, int]] = [samples[i] for i in keep]
        self.labels: Tensor = torch.tensor([s[1] for s in self.samples], dtype=torch.int64)
        self.num_classes: int = len(self.classes)
        self.channels: int = int(channels)
        self.image_size: int = int(image_size)
        self.name: str = "image_folder"
        self.root: Path = split_dir

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, label = self.samples[i]
        return load_image(path, self.image_size, self.channels), label

    def to_memory(self) -> InMemoryDataset:
        """Decode every image now into an InMemoryDataset (for small folders)."""
        images = torch.stack([self[i][0] for i in range(len(self))])
        return InMemoryDataset(images, self.labels, self.num_classes, self.name, source=str(self.root))

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset(root={str(self.root)!r}, n={len(self)}, classes={self.num_classes}, "
            f"image_size={self.image_size}, channels={self.channels})"
        )


@register("dataset", "image_folder")
def image_folder(
    root: str | os.PathLike[str] | None = None,
    train: bool = True,
    image_size: int = 224,
    channels: int = 3,
    fraction: float = 1.0,
    seed: int = 0,
    in_memory: bool = False,
) -> ImageFolderDataset | InMemoryDataset:
    """Class-subfolder images (ImageNet-100 layout), lazily decoded; `in_memory=True` decodes all at once."""
    ds = ImageFolderDataset(root, train, image_size, channels, fraction, seed)
    return ds.to_memory() if in_memory else ds
