"""The papers' linear probe inside a run's evaluation (``eval.linear_probe_kind: sgd``): SGD on the
representations r of random-resized, flipped crops of the training images, drawn anew every epoch through
the frozen encoder (``eval.sgd_probe_augment``; else the centre-crop features), scored on the test split's
centre crops. Every epoch the training split is encoded once in the loader's order (features stay on the
model's device), then SGD runs over a new permutation of those rows: each image is seen once per epoch
under one random crop, as in DirectCLR's linear_probe.py. Under torch.distributed each process encodes
and trains on its share of the rows (training/eval_shard.py), the gradients summed over processes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from dimcollapse.data.views import ViewAugment
from dimcollapse.records import accuracy_key
from dimcollapse.records.accuracy import TOPS
from dimcollapse.training.eval_shard import Split
from dimcollapse.training.probe_sgd import (
    FeatureFn,
    RowShard,
    SGDProbeSettings,
    fit_sgd_probe,
    probe_topk,
    rows_of,
)
from dimcollapse.utils.distributed import sum_detached

CROPS = {"name": "none", "crop": True, "crop_scale": (0.08, 1.0), "hflip_p": 0.5}


def crop_augment(module: Any) -> ViewAugment:
    """Random-resized crop (scale 0.08-1) + horizontal flip at the module's view size and normalisation."""
    views = module.views
    return ViewAugment(
        dict(CROPS),
        image_size=views.image_size,
        channels=views.channels,
        n_views=1,
        mean=views.mean_t.flatten().tolist(),
        std=views.std_t.flatten().tolist(),
    ).to(next(module.parameters()).device)


@torch.no_grad()
def augmented_features(module: Any, batches: Iterable[tuple[Any, Tensor]], augment: ViewAugment) -> Tensor:
    """r of one random crop of every labelled training image, in the loader's order, on the model's
    device (the encoder in eval mode: BatchNorm statistics frozen); batches of [crop] cut by the loader
    from the full image (``SSLDataModule.probe_crop_loader``) are only flipped here."""
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    out = []
    try:
        for x, y in batches:
            keep = torch.as_tensor(y) >= 0
            k = keep.to(device)
            views = augment([c.to(device)[k] for c in x] if isinstance(x, list) else x.to(device)[k])
            out.append(module.model.encode(views[0])[0].float())
    finally:
        module.train(was_training)
    return torch.cat(out)


def sgd_probe_accuracies(
    module: Any,
    train: Iterable[tuple[Any, Tensor]],
    settings: SGDProbeSettings,
    augment: bool,
    tr: Split,
    te: Split,
    num_classes: int,
) -> dict[str, float]:
    """linear_sgd_top1 / _top5 of the SGD probe on r (``tr`` / ``te``: this process's labelled training
    rows and test rows, centre-crop features; ``train``: this process's training batches)."""
    device = next(module.parameters()).device
    shard, order = RowShard.of_positions(tr.pos, device)
    labels = torch.empty(order.numel(), dtype=torch.long)
    labels[shard.local >= 0] = tr.y.cpu()[shard.local[shard.local >= 0]]
    labels = _labels_everywhere(labels, shard, device)
    fixed = rows_of(tr.x.to(device))
    refresh = None
    if augment:
        crops = crop_augment(module)

        def refresh(epoch: int) -> FeatureFn:
            del epoch  # the crops are random: every call draws new ones
            return rows_of(augmented_features(module, train, crops))

    layer = fit_sgd_probe(
        fixed, labels, tr.x.shape[1], num_classes, settings, device, refresh=refresh, shard=shard
    )
    tops = probe_topk(layer, rows_of(te.x.to(device)), te.y)
    return {accuracy_key("linear_sgd", t): tops[t] for t in TOPS}


def _labels_everywhere(labels: Tensor, shard: RowShard, device: torch.device) -> Tensor:
    """The labels of all n rows on every process (each process knows its own rows'; summed, int64)."""
    mine = torch.where(shard.local >= 0, labels, torch.zeros_like(labels))
    return sum_detached(mine.to(device)).cpu()
