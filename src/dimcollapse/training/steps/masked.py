"""The masked step: mask patches of the online views, predict the target's embedding of the unmasked views.

The step of masked siamese networks (MSN, Assran et al., ECCV 2022): the online network sees each global
view with a random ``mask_ratio`` of its ``patch_size`` x ``patch_size`` patches masked (set to 0, the
dataset mean after the views' normalisation: the pixel-space form of dropping ViT patch tokens, so any
backbone trains), the momentum target sees the same views unmasked; the objective compares every masked
anchor with the target embedding of the other views, ``loss(z1_masked, z2_masked, t1, t2)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dimcollapse import contracts
from dimcollapse.errors import ConfigError
from dimcollapse.registry import register
from dimcollapse.training.steps.base import encode_views, pairwise_loss


def mask_patches(x: Tensor, patch_size: int, ratio: float) -> tuple[Tensor, Tensor]:
    """(x with round(ratio * P) of its P patches set to 0 in every image, the patch mask [N, gh, gw]).

    The grid has gh = ceil(H / p) x gw = ceil(W / p) patches (edge patches are cut to the image); each
    image draws its patches uniformly without replacement from torch's generator (seeded per step)."""
    n, _, h, w = x.shape
    gh, gw = -(-h // patch_size), -(-w // patch_size)
    total = gh * gw
    k = round(ratio * total)
    chosen = torch.rand(n, total, device=x.device).argsort(dim=1)[:, :k]
    mask = torch.zeros(n, total, dtype=torch.bool, device=x.device).scatter_(1, chosen, True)
    grid = mask.view(n, 1, gh, gw)
    pixels = grid.repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)[:, :, :h, :w]
    return x.masked_fill(pixels, 0.0), mask.view(n, gh, gw)


@register("step", "masked")
class MaskedStep:
    """Anchors: the masked global views through f and g; targets: the unmasked global views through the
    momentum target; L_ssl = the objective over every pair of views, ``loss(z_i~, z_j~, t_i, t_j)``."""

    def __init__(self, mask_ratio: float = 0.3, patch_size: int = 4) -> None:
        if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, int | float) or not 0 < mask_ratio < 1:
            raise ConfigError(f"step masked: mask_ratio must be a number in (0, 1), got {mask_ratio!r}.")
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ConfigError(
                f"step masked: patch_size must be an integer >= 1 (pixels), got {patch_size!r}."
            )
        self.mask_ratio, self.patch_size = float(mask_ratio), int(patch_size)

    def check(self, nets: contracts.Networks, n_global: int, n_local: int) -> None:
        """The objective has a momentum target; two or more global views, no local crops."""
        name = getattr(nets.objective, "name", type(nets.objective).__name__)
        if not nets.uses_momentum_target:
            raise ConfigError(
                f"step masked predicts the momentum target's embedding of the unmasked views, but objective "
                f"{name} has no momentum target; use msn (or byol, mocov3, ...), or step.name=views."
            )
        if n_local or n_global < 2:
            raise ConfigError(
                f"step masked compares >= 2 global views and takes no local crops (got {n_global} global, "
                f"{n_local} local): set data.views.n_views=2 and drop data.views.overrides.local_crops."
            )

    def __call__(
        self, batch: contracts.StepBatch, nets: contracts.Networks, values: contracts.StepValues
    ) -> contracts.StepResult:
        """(L_ssl, r of the masked views, the target's r of the unmasked views)."""
        views = batch.views[: batch.n_global]
        masked = [mask_patches(v, self.patch_size, self.mask_ratio)[0] for v in views]
        rs, zs = encode_views(masked, nets.encode)
        tr, tz = encode_views(views, nets.encode_target)
        return contracts.StepResult(pairwise_loss(nets.objective, zs, tz, values.objective), rs, tr)
