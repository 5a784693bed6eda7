"""ImageNet-1k as distributed: ``root/train/<wnid>/*.JPEG`` and ``root/val/ILSVRC2012_val_*.JPEG`` (flat)
with a labels file (``data/imagenet_labels.py``; a val/ already sorted into class folders is read too).

Classes are the sorted WordNet ids of train/ (the index every ImageNet codebase uses), for both splits.
Files come from the shared file index (``data/file_index.py``): built once, read by every rank; or, with
``shards=DIR``, from tar shards ``DIR/train`` and ``DIR/val`` (``data/shards.py``), read at their offsets.
Items are evaluation crops (shorter side to ``resize`` = 256, centre ``image_size`` = 224, bilinear as
torchvision's Resize); training draws
random-resized crops from the full image in the loader (``data/loader_crops.py``, ``loader_crops = True``)
resampled with ``interpolation`` (bilinear, or bicubic as DirectCLR's code).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from dimcollapse.data.base import subset_indices
from dimcollapse.data.crops import RESAMPLE, centre_box, crop_pil
from dimcollapse.data.decode import DECODERS, open_image
from dimcollapse.data.file_index import class_folder_names, shared_index
from dimcollapse.data.imagenet_labels import find_labels_file, read_val_labels, stem
from dimcollapse.data.paths import candidate_dirs
from dimcollapse.data.shards import read_manifest, shard_members
from dimcollapse.errors import ConfigError, InputError
from dimcollapse.registry import register

SUBDIRS = ("imagenet", "imagenet-1k", "imagenet1k", "ILSVRC2012")


def find_root(root: str | os.PathLike[str] | None) -> Path:
    """The first candidate folder holding train/ (ImageNet's layout)."""
    dirs = candidate_dirs(root, SUBDIRS)
    found = next((d for d in dirs if (d / "train").is_dir()), None)
    if found is None:
        looked = "; ".join(str(d) for d in dirs) or "(nowhere: no root given and $DIMCOLLAPSE_DATA unset)"
        raise InputError(
            f"ImageNet not found. Looked in: {looked}. Set data.root=DIR to the folder holding train/<wnid>/ "
            "and val/ (flat ILSVRC2012_val_*.JPEG with a labels file, or class folders)."
        )
    return found


def val_samples(
    val: Path, files: list[str], classes: dict[str, int], labels_file: Path | None, meta: Path | None
) -> list[tuple[Path, int]]:
    """(path, class index) of each flat validation file, its WordNet id read from the labels file."""
    if labels_file is None:
        raise InputError(
            f"{val} is a flat folder of images and no labels file was found beside it; give "
            "data.kwargs.labels_file=PATH (LOC_val_solution.csv, '<file> <wnid>' lines, or the devkit's "
            "ILSVRC2012_validation_ground_truth.txt with meta.mat)."
        )
    wnids = read_val_labels(labels_file, meta)
    out: list[tuple[Path, int]] = []
    for name in files:
        wnid = wnids.get(stem(name))
        if wnid is None:
            raise InputError(f"{labels_file} has no label for {name}; is it the labels file of {val}?")
        if wnid not in classes:
            raise InputError(
                f"{labels_file}: {name} is labelled {wnid!r}, which is not a class folder of train/."
            )
        out.append((val / name, classes[wnid]))
    return out


def folder_samples(
    split: Path,
    index_dir: str | os.PathLike[str] | None,
    labels_file: str | os.PathLike[str] | None,
    meta_file: str | os.PathLike[str] | None,
) -> tuple[list[str], list[tuple[Path, int]]]:
    """(sorted train/ WordNet ids, (path, class index) of the split's files from the shared index)."""
    base = split.parent
    names = class_folder_names(base / "train")
    if not names:
        raise InputError(f"{base / 'train'} has no class folders; expected one folder per WordNet id.")
    classes = {c: i for i, c in enumerate(names)}
    if not split.is_dir():
        raise InputError(f"{base} has no {split.name}/ folder.")
    flat = split.name == "val" and not class_folder_names(split)
    files, _ = shared_index(split, "flat" if flat else "class_folders", index_dir)
    if flat:
        found = Path(labels_file) if labels_file is not None else find_labels_file(base)
        return names, val_samples(split, files, classes, found, Path(meta_file) if meta_file else None)
    unknown = sorted({f.split("/", 1)[0] for f in files} - set(classes))
    if unknown:
        raise InputError(f"{split}: class folder(s) {', '.join(unknown[:5])} do not exist in train/.")
    return names, [(split / f, classes[f.split("/", 1)[0]]) for f in files]


class ImageNetDataset(Dataset[tuple[Tensor, int]]):
    """Lazy ImageNet split of (uint8 [C, image_size, image_size] evaluation crop, class index)."""

    loader_crops = True  # training crops are cut from the full image by the loader

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        train: bool = True,
        image_size: int = 224,
        resize: int = 256,
        channels: int = 3,
        labels_file: str | os.PathLike[str] | None = None,
        meta_file: str | os.PathLike[str] | None = None,
        index_dir: str | os.PathLike[str] | None = None,
        shards: str | os.PathLike[str] | None = None,
        interpolation: str = "bilinear",
        decode: str = "auto",
        fraction: float = 1.0,
        seed: int = 0,
    ) -> None:
        if channels not in (1, 3) or int(image_size) < 2 or int(resize) < int(image_size):
            raise ConfigError(
                f"imagenet needs channels 1 or 3 and 2 <= image_size <= resize, got {channels}, "
                f"{image_size}, {resize} (the papers: image_size 224, resize 256)."
            )
        if interpolation not in RESAMPLE or decode not in DECODERS:
            raise ConfigError(
                f"imagenet interpolation must be one of {', '.join(RESAMPLE)} and decode one of "
                f"{', '.join(DECODERS)}; got {interpolation!r}, {decode!r}."
            )
        samples: Sequence[tuple[Any, int]]
        if shards is not None:  # tar shards written by `dimcollapse data shards` (data/shards.py)
            split = Path(shards) / ("train" if train else "val")
            names, samples = list(read_manifest(split)["classes"]), shard_members(split)
        else:
            split = find_root(root) / ("train" if train else "val")
            names, samples = folder_samples(split, index_dir, labels_file, meta_file)
        self.classes: list[str] = names
        if not samples:
            raise InputError(f"{split} holds no images.")
        keep = subset_indices(len(samples), fraction, seed).tolist()
        self.samples: list[tuple[Any, int]] = [samples[i] for i in keep]  # (Path or shard Member, label)
        self.labels: Tensor = torch.tensor([s[1] for s in self.samples], dtype=torch.int64)
        self.num_classes, self.channels, self.image_size = len(names), int(channels), int(image_size)
        self.resize, self.interpolation, self.decode = int(resize), interpolation, decode
        self.name, self.root = "imagenet", split

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, label = self.samples[i]
        img = open_image(path, self.channels)
        box = centre_box(img.size[0], img.size[1], self.resize, self.image_size)
        return crop_pil(img, box, self.image_size), label  # Resize(256) + CenterCrop(224): bilinear

    def files(self) -> Sequence[tuple[Any, int]]:
        """(path, label) of every sample, in order (for the shard writer and the loader crops)."""
        return self.samples

    def __repr__(self) -> str:
        return f"ImageNetDataset(root={str(self.root)!r}, n={len(self)}, classes={self.num_classes})"


register("dataset", "imagenet")(ImageNetDataset)
