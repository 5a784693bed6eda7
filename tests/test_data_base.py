"""InMemoryDataset, fraction subsets, the fixed train/val split and the synthetic dataset."""

from __future__ import annotations

import pytest
import torch

from dimcollapse.data.base import InMemoryDataset, subset_indices, train_val_split
from dimcollapse.errors import ConfigError, InputError
from dimcollapse.registry import build, names


def test_all_datasets_registered() -> None:
    assert {"fashion_mnist", "synthetic"} <= set(names("dataset"))


def test_fraction_is_seeded_subset_of_the_right_size() -> None:
    full = build("dataset", "synthetic", n=200, seed=1)
    half = build("dataset", "synthetic", n=200, seed=1, fraction=0.25)
    again = build("dataset", "synthetic", n=200, seed=1, fraction=0.25)
    assert len(half) == 50
    assert torch.equal(half.images, again.images)
    # every kept row is a row of the full dataset, with its own label
    idx = subset_indices(200, 0.25, seed=1)
    assert torch.equal(half.images, full.images[idx]) and torch.equal(half.labels, full.labels[idx])
    assert len(set(idx.tolist())) == 50
    other = subset_indices(200, 0.25, seed=2)
    assert not torch.equal(idx, other)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), "x"])
def test_bad_fraction(bad: object) -> None:
    with pytest.raises(ConfigError, match="fraction"):
        subset_indices(10, bad)  # type: ignore[arg-type]


def test_train_val_split_is_disjoint_and_fixed() -> None:
    ds = build("dataset", "synthetic", n=100, seed=0)
    tr, va = train_val_split(ds, 0.2, seed=5)
    _, va2 = train_val_split(ds, 0.2, seed=5)
    assert len(tr) == 80 and len(va) == 20 and torch.equal(va.images, va2.images)
    rows = {tuple(r.flatten().tolist()[:40]) for r in ds.images}
    seen_tr = {tuple(r.flatten().tolist()[:40]) for r in tr.images}
    seen_va = {tuple(r.flatten().tolist()[:40]) for r in va.images}
    assert seen_tr | seen_va == rows and not (seen_tr & seen_va)
    with pytest.raises(InputError, match="at least one"):
        train_val_split(build("dataset", "synthetic", n=1), 0.5)


def test_validation_of_images_and_labels() -> None:
    imgs = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(InputError, match="uint8"):
        InMemoryDataset(imgs.float(), torch.zeros(4), 2, "x")
    with pytest.raises(InputError, match="4 images but 3 labels"):
        InMemoryDataset(imgs, torch.zeros(3), 2, "x")
    with pytest.raises(InputError, match=r"\[0, 2\)"):
        InMemoryDataset(imgs, torch.tensor([0, 1, 2, 0]), 2, "x")


def test_synthetic_has_class_structure_and_channel_stats() -> None:
    tr = build("dataset", "synthetic", n=300, num_classes=3, channels=3, image_size=8, train=True)
    te = build("dataset", "synthetic", n=60, num_classes=3, channels=3, image_size=8, train=False)
    assert tr.images.shape == (300, 3, 8, 8) and tr.channels == 3 and tr.image_size == 8
    assert not torch.equal(tr.images[:60], te.images)
    # nearest neighbour on pixels recovers the class (shared prototypes), far above chance 1/3
    d = torch.cdist(te.images.flatten(1).float(), tr.images.flatten(1).float())
    acc = (tr.labels[d.argmin(1)] == te.labels).float().mean()
    assert acc > 0.9
    mean, std = tr.channel_stats()
    x = tr.images.double() / 255
    assert abs(mean[1] - x[:, 1].mean().item()) < 1e-9 and abs(std[2] - x[:, 2].std().item()) < 1e-9
