"""DirectCLR (Jing et al., ICLR 2022, section 6): symmetric cross-view InfoNCE on the sub-vector r[:, :d0]."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dimcollapse.errors import ConfigError
from dimcollapse.objectives.base import Objective, check_positive, normalize_rows
from dimcollapse.registry import register
from dimcollapse.utils.distributed import all_gather_with_grad, local_share


@register("objective", "directclr")
class DirectCLR(Objective):
    """InfoNCE on the leading slice z[:, :d0], logits z1 z2^T / tau, targets the diagonal, symmetrised."""

    name: ClassVar[str] = "directclr"

    def __init__(self, d0: int | None = None, temperature: float = 0.1) -> None:
        super().__init__()
        if d0 is None:
            raise ConfigError(
                "directclr: d0 is required, the size of the leading slice r[:, :d0] (DC: 360 of 2048)."
            )
        if isinstance(d0, bool) or not isinstance(d0, int) or d0 < 1:
            raise ConfigError(f"directclr: d0 must be a positive integer (DC used 360 of 2048), got {d0!r}.")
        check_positive("directclr", temperature=temperature)
        self.d0 = d0
        self.temperature = float(temperature)

    def embedding_slice(self) -> int:
        """d0: the loss reads z[:, :d0] only."""
        return self.d0

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """L = (CE(z1 z2^T / tau, I) + CE(z2 z1^T / tau, I)) / 2 on z = normalize(r[:, :d0]), mean over N."""
        self.check_pair(z1, z2, min_rows=1)
        if self.d0 > z1.shape[1]:
            raise ConfigError(
                f"directclr: d0 = {self.d0} is larger than the representation size {z1.shape[1]}; "
                f"choose d0 <= {z1.shape[1]} (DC used d0 = 360 of D = 2048)."
            )
        n = z1.shape[0]
        a1, a2 = normalize_rows(z1[:, : self.d0]), normalize_rows(z2[:, : self.d0])
        gathered, offset = all_gather_with_grad(torch.stack([a1, a2], dim=1))  # [N, 2, d0]
        n_total = gathered.shape[0]
        target = torch.arange(n, device=z1.device) + offset
        logits12 = (a1 / self.temperature) @ gathered[:, 1].T  # anchors of view 1 against every view-2 key
        logits21 = (a2 / self.temperature) @ gathered[:, 0].T
        ce_sum = F.cross_entropy(logits12, target, reduction="sum") + F.cross_entropy(
            logits21, target, reduction="sum"
        )
        loss = local_share(ce_sum, 2 * n_total)
        with torch.no_grad():
            pos_sim = (a1 * a2).sum(dim=1).mean()
            acc = (logits12.argmax(dim=1) == target).float().mean()
        self.last_stats = {"loss": loss.detach(), "pos_sim": pos_sim.detach(), "top1": acc.detach()}
        return loss
