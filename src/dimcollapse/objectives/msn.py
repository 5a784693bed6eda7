"""MSN, masked siamese networks (Assran et al., ECCV 2022): a masked anchor view predicts the momentum
target's sharpened prototype assignment of the other, unmasked view, with mean-entropy maximisation.

The loss is the objective; the masking is the training step's (``training/steps/masked.py``, this
objective's ``default_step``): the step calls ``loss(z1_masked, z2_masked, t1, t2)``. Under the plain
``views`` step the same loss compares unmasked views. The prototypes are shared by anchor and target (the
target side reads them without gradient), as in MSN; no Sinkhorn normalisation of the targets.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.objectives.base import Objective, check_nonnegative, check_positive
from dimcollapse.objectives.dino import Prototypes
from dimcollapse.registry import register
from dimcollapse.utils.distributed import global_batch_size, global_mean, local_share


@register("objective", "msn")
class MSN(Objective):
    """L = 1/2 [H(p+(t2), p(z1~)) + H(p+(t1), p(z2~))] - lambda H(p_bar).

    p(z) = softmax(cos(z, q_k) / tau); p+(t) = sharpen(p(t), T) = p^(1/T) / sum_k p_k^(1/T), no gradient;
    H(a, b) = -(1/N) sum_i a_i . log b_i; p_bar = the mean of p over the anchors of the (global) batch;
    H(p_bar) = -sum_k p_bar_k log p_bar_k (mean-entropy maximisation, weight lambda = me_max_weight)."""

    uses_momentum_target: ClassVar[bool] = True
    needs_dim: ClassVar[bool] = True
    name: ClassVar[str] = "msn"
    default_momentum: ClassVar[tuple[float, float]] = (0.996, 1.0)
    default_step: ClassVar[str] = "masked"

    def __init__(
        self,
        dim: int | None = None,
        n_prototypes: int = 1024,
        temperature: float = 0.1,
        sharpen: float = 0.25,
        me_max_weight: float = 1.0,
    ) -> None:
        super().__init__()
        check_positive("msn", temperature=temperature, sharpen=sharpen)
        check_nonnegative("msn", me_max_weight=me_max_weight)
        if dim is None or isinstance(n_prototypes, bool) or int(n_prototypes) < 1:
            raise ConfigError("msn: dim (projector out_dim) and n_prototypes >= 1 are required.")
        self.prototypes = Prototypes(int(dim), int(n_prototypes))
        self.temperature, self.sharpen = float(temperature), float(sharpen)
        self.me_max_weight = float(me_max_weight)

    def forward(self, z1: Tensor, z2: Tensor, t1: Tensor | None = None, t2: Tensor | None = None) -> Tensor:
        """z1, z2: the online (masked) anchors' embeddings; t1, t2: the target's embeddings of the views."""
        if t1 is None or t2 is None:
            raise InputError("msn: needs the momentum target's embeddings: loss(z1, z2, t1, t2).")
        self.check_pair(z1, z2)
        tau = self.temperature
        log_p = [F.log_softmax(self.prototypes(z) / tau, dim=1) for z in (z1, z2)]
        with torch.no_grad():  # sharpen(softmax(l / tau), T) = softmax(l / (tau T))
            targets = [F.softmax(self.prototypes(t.detach()) / (tau * self.sharpen), dim=1) for t in (t1, t2)]
        n_total = global_batch_size(z1.shape[0], z1.device)
        cross = -(targets[1] * log_p[0]).sum() - (targets[0] * log_p[1]).sum()
        ce = local_share(cross, 2 * n_total)
        p_bar = global_mean(torch.cat([lp.exp() for lp in log_p]), 2 * n_total)
        me_max = -torch.special.xlogy(p_bar, p_bar).sum()
        loss = ce - self.me_max_weight * me_max
        with torch.no_grad():
            t_ent = -torch.special.xlogy(targets[0], targets[0]).sum(1).mean()
        self.last_stats = {"loss": loss.detach(), "cross_entropy": ce.detach(),
                           "mean_entropy": me_max.detach(), "target_entropy": t_ent}  # fmt: skip
        return loss
