"""The building blocks of training steps: encode views in batches of one size, average a loss over pairs."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from dimcollapse import contracts

Encoder = Callable[[Tensor], tuple[Tensor, Tensor]]


def encode_views(views: list[Tensor], encode: Encoder) -> tuple[list[Tensor], list[Tensor]]:
    """(r, z) per view; views of one size go through the network in one batch (multi-crop: 2 sizes)."""
    r_out: list[Tensor | None] = [None] * len(views)
    z_out: list[Tensor | None] = [None] * len(views)
    for shape in dict.fromkeys(tuple(v.shape) for v in views):
        idx = [i for i, v in enumerate(views) if tuple(v.shape) == shape]
        r_all, z_all = encode(torch.cat([views[i] for i in idx]))
        for i, r, z in zip(idx, r_all.chunk(len(idx)), z_all.chunk(len(idx)), strict=True):
            r_out[i], z_out[i] = r, z
    return [r for r in r_out if r is not None], [z for z in z_out if z is not None]


def pairwise_loss(
    objective: contracts.Objective,
    zs: list[Tensor],
    ts: list[Tensor] | None,
    scheduled: Mapping[str, float | bool],
) -> Tensor:
    """L = mean over view pairs i < j of loss(z_i, z_j[, t_i, t_j]); a multi-view objective is called once,
    ``forward_views(zs, ts)``. The objective's scheduled keywords are passed to every call."""
    kw = dict(scheduled)
    if objective.multi_view:
        loss: Tensor = objective.forward_views(zs, ts, **kw)
        return loss
    losses = []
    for i, j in itertools.combinations(range(len(zs)), 2):
        if ts is not None:
            losses.append(objective(zs[i], zs[j], ts[i], ts[j], **kw))
        else:
            losses.append(objective(zs[i], zs[j], **kw))
    return torch.stack(losses).mean() if len(losses) > 1 else losses[0]
