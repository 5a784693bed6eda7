"""Datasets on disk (checked on load) and batched view augmentation; registered under "dataset"."""

from dimcollapse.data import fashion_mnist, synthetic
from dimcollapse.data.base import InMemoryDataset, subset_indices, train_val_split
from dimcollapse.data.views import DATASET_STATS, ViewAugment

__all__ = [
    "DATASET_STATS",
    "InMemoryDataset",
    "ViewAugment",
    "fashion_mnist",
    "subset_indices",
    "synthetic",
    "train_val_split",
]
