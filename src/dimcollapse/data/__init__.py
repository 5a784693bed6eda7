"""Datasets on disk (checked on load) and batched view augmentation; registered under "dataset".

Importing this package registers every dataset: fashion_mnist, digits, cifar10, cifar100, stl10,
image_folder, imagenet, synthetic (`build("dataset", name, root=DIR, train=True, ...)`).
"""

from dimcollapse.data import cifar, digits, fashion_mnist, image_folder, imagenet, stl10, synthetic
from dimcollapse.data.base import InMemoryDataset, subset_indices, train_val_split
from dimcollapse.data.image_folder import ImageFolderDataset
from dimcollapse.data.views import DATASET_STATS, ViewAugment, eval_transform

__all__ = [
    "DATASET_STATS",
    "ImageFolderDataset",
    "InMemoryDataset",
    "ViewAugment",
    "cifar",
    "digits",
    "eval_transform",
    "fashion_mnist",
    "image_folder",
    "imagenet",
    "stl10",
    "subset_indices",
    "synthetic",
    "train_val_split",
]
