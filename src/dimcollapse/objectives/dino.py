"""DINO (Caron et al. 2021): cross-entropy between a centred, sharpened teacher distribution over K
prototypes and the student's, across views (multi-crop: the teacher sees the global crops only).

Split of the DINO head: the projector is its MLP (ending in the bottleneck z); this objective owns the
weight-normalised last layer (prototypes V, g = 1: logits = normalize(z) V_n^T with unit rows V_n) and its
teacher copy, which follows the student by the same EMA as the target network (momentum.py)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.objectives.base import Objective, check_positive, normalize_rows
from dimcollapse.objectives.momentum import EMACopy
from dimcollapse.registry import register
from dimcollapse.utils.distributed import all_reduce_sum, global_batch_size, local_share


class Prototypes(nn.Module):
    """logits = normalize(z) normalize_rows(V)^T: a weight-normalised linear layer with g = 1, no bias."""

    def __init__(self, dim: int, n_prototypes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_prototypes, dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, z: Tensor, frozen: bool = False) -> Tensor:
        """Cosine of each row of z with each prototype; ``frozen``: the prototypes get a zero gradient.

        Frozen prototypes stay in the graph (0 * weight) so DDP without find_unused_parameters still sees a
        gradient for them; weight decay then only rescales rows, which the normalisation ignores."""
        w = self.weight.detach() + 0.0 * self.weight if frozen else self.weight
        a = normalize_rows(z)
        return a @ F.normalize(w, dim=1).to(a.dtype).T


@register("objective", "dino")
class DINO(Objective):
    """L = mean over pairs (teacher view a, student view b != a) of (1/N) sum_i
    -softmax((g_t(t_a,i) - c) / tau_t) . log softmax(g_s(z_b,i) / tau_s); c <- m_c c + (1 - m_c) mean g_t."""

    uses_momentum_target: ClassVar[bool] = True
    needs_dim: ClassVar[bool] = True
    multi_view: ClassVar[bool] = True
    name: ClassVar[str] = "dino"
    default_momentum: ClassVar[tuple[float, float]] = (0.996, 1.0)

    def __init__(
        self,
        dim: int | None = None,
        n_prototypes: int = 65536,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
    ) -> None:
        super().__init__()
        check_positive("dino", student_temp=student_temp)
        if dim is None or isinstance(n_prototypes, bool) or int(n_prototypes) < 1:
            raise ConfigError("dino: dim (projector out_dim) and n_prototypes >= 1 are required.")
        if not 0.0 <= center_momentum < 1.0:
            raise ConfigError("dino: center_momentum must be in [0, 1).")
        self.prototypes = Prototypes(dim, int(n_prototypes))
        self.teacher_prototypes = EMACopy(self.prototypes)
        self.student_temp = float(student_temp)
        self.center_momentum = float(center_momentum)
        self.center: Tensor
        self.register_buffer("center", torch.zeros(1, int(n_prototypes)))

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The teacher's prototypes follow the student's with the target network's momentum."""
        return [(self.prototypes, self.teacher_prototypes.module)]

    def forward(
        self,
        z1: Tensor,
        z2: Tensor,
        t1: Tensor | None = None,
        t2: Tensor | None = None,
        teacher_temp: float = 0.04,
        freeze_prototypes: bool = False,
    ) -> Tensor:
        """Two views: forward_views([z1, z2], [t1, t2])."""
        ts = None if t1 is None or t2 is None else [t1, t2]
        return self.forward_views([z1, z2], ts, teacher_temp, freeze_prototypes)

    def forward_views(
        self,
        zs: list[Tensor],
        ts: list[Tensor] | None = None,
        teacher_temp: float = 0.04,
        freeze_prototypes: bool = False,
    ) -> Tensor:
        """zs: student embeddings of all crops (global first), ts: teacher embeddings of the global crops;
        ``teacher_temp`` tau_t and ``freeze_prototypes`` (no gradient to them) from the run's schedules."""
        if ts is None or not ts or len(zs) < 2 or len(ts) > len(zs):
            raise InputError(
                "dino: needs the student embeddings of >= 2 crops and the teacher's (momentum target) "
                "embeddings of the global crops: loss(z1, z2, t1, t2) or forward_views(zs, ts)."
            )
        if not teacher_temp > 0:
            raise InputError(f"dino: teacher_temp must be a positive number, got {teacher_temp!r}.")
        log_s = [F.log_softmax(self.prototypes(z, freeze_prototypes) / self.student_temp, dim=1) for z in zs]
        t_logits = [self.teacher_prototypes(t.detach()) for t in ts]
        tau_t = teacher_temp
        p_t = [F.softmax((t - self.center.to(t.dtype)) / tau_t, dim=1) for t in t_logits]
        total, pairs = zs[0].new_zeros(()), 0
        for a, pa in enumerate(p_t):
            for b, ls in enumerate(log_s):
                if a != b:
                    total = total - (pa * ls).sum()
                    pairs += 1
        n_total = global_batch_size(zs[0].shape[0], zs[0].device)
        loss = local_share(total, pairs * n_total)
        if self.training:
            self._update_center(t_logits, n_total)
        with torch.no_grad():
            entropy = -(p_t[0] * p_t[0].clamp_min(1e-30).log()).sum(1).mean()
        self.last_stats = {"loss": loss.detach(), "teacher_entropy": entropy,
                           "teacher_temp": loss.new_tensor(tau_t).detach()}  # fmt: skip
        return loss

    @torch.no_grad()
    def _update_center(self, t_logits: list[Tensor], n_total: int) -> None:
        """c <- m c + (1 - m) (mean of the teacher logits over the global batch and the global views)."""
        batch_sum = all_reduce_sum(torch.stack([t.sum(0) for t in t_logits]).sum(0))
        mean = batch_sum / (n_total * len(t_logits))
        self.center.mul_(self.center_momentum).add_(
            mean.to(self.center.dtype), alpha=1 - self.center_momentum
        )
