"""The papers' linear probe inside a run's evaluation (``eval.linear_probe_kind: sgd``): SGD on the
representations r of random-resized, flipped crops of the training images, drawn anew every epoch through
the frozen encoder (``eval.sgd_probe_augment``; else the centre-crop features), scored on the test split's
centre crops. Every epoch the training split is encoded once in the loader's order (features stay on the
model's device), then SGD runs over a new permutation of those rows: each image is seen once per epoch
under one random crop, as in DirectCLR's linear_probe.py."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from dimcollapse.data.views import ViewAugment
from dimcollapse.records import accuracy_key
from dimcollapse.records.accuracy import TOPS
from dimcollapse.training.probe_sgd import FeatureFn, SGDProbeSettings, fit_sgd_probe, probe_topk, rows_of

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
def augmented_features(module: Any, batches: Iterable[tuple[Tensor, Tensor]], augment: ViewAugment) -> Tensor:
    """r of one random crop of every labelled training image, in the loader's order, on the model's
    device (the encoder in eval mode: BatchNorm statistics frozen)."""
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    out = []
    try:
        for x, y in batches:
            keep = torch.as_tensor(y) >= 0
            views = augment(x.to(device)[keep.to(device)])
            out.append(module.model.encode(views[0])[0].float())
    finally:
        module.train(was_training)
    return torch.cat(out)


def sgd_probe_accuracies(
    module: Any,
    train: Iterable[tuple[Tensor, Tensor]],
    settings: SGDProbeSettings,
    augment: bool,
    xtr: Tensor,
    ytr: Tensor,
    xte: Tensor,
    yte: Tensor,
    num_classes: int,
) -> dict[str, float]:
    """linear_sgd_top1 / _top5 of the SGD probe on r (``xtr`` / ``xte``: centre-crop features)."""
    device = next(module.parameters()).device
    fixed = rows_of(xtr.to(device))
    refresh = None
    if augment:
        crops = crop_augment(module)

        def refresh(epoch: int) -> FeatureFn:
            del epoch  # the crops are random: every call draws new ones
            return rows_of(augmented_features(module, train, crops))

    layer = fit_sgd_probe(fixed, ytr, xtr.shape[1], num_classes, settings, device, refresh=refresh)
    tops = probe_topk(layer, rows_of(xte.to(device)), yte)
    return {accuracy_key("linear_sgd", t): tops[t] for t in TOPS}
