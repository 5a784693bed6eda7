"""InfoNCE losses of the DirectCLR toy models, batched over independent replicas (DC eq. 2)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from dimcollapse.errors import unknown_name

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _pairwise_sq(a: torch.Tensor) -> torch.Tensor:
    """|a_i - a_j|^2 = |a_i|^2 + |a_j|^2 - 2 a_i.a_j for (..., N, d) inputs (Gram form, fast)."""
    sq = (a * a).sum(-1)
    return sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2.0 * (a @ a.transpose(-1, -2))


def distance_logits(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Logits of DC eq. 2: l_ii = -|z_i - z'_i|^2 / 2, l_ij = -|z_i - z_j|^2 / 2 (negatives from view 1)."""
    same = -0.5 * _pairwise_sq(z1)
    pos = -0.5 * ((z1 - z2) ** 2).sum(-1)
    eye = torch.eye(z1.shape[-2], dtype=torch.bool, device=z1.device)
    return torch.where(eye, pos.unsqueeze(-1).expand_as(same), same)


def distance_infonce(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """DC eq. 2: mean_i -log( e^{l_ii} / sum_j e^{l_ij} ) with the distance kernel exp(-|z_i - z_j|^2 / 2).

    Inputs (..., N, d); returns one loss per leading index (a replica), shape (...).
    """
    logits = distance_logits(z1, z2)
    return _diag_cross_entropy(logits)


def dot_infonce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """InfoNCE of the released DC script: logits z1 z2^T / temperature, targets the diagonal."""
    logits = z1 @ z2.transpose(-1, -2) / temperature
    return _diag_cross_entropy(logits)


# exp() of very negative numbers takes a slow path on CPU (~40x); terms below e^-80 of the row maximum
# change the sum by < 1e-34 relative, so they are clamped there (their gradient is zero either way).
_FLOOR = -80.0


def _logsumexp(logits: torch.Tensor) -> torch.Tensor:
    """log sum_j exp(l_ij) with the row maximum taken out and shifted terms floored at e^-80."""
    m = logits.detach().amax(-1, keepdim=True)
    return m.squeeze(-1) + torch.exp((logits - m).clamp_min(_FLOOR)).sum(-1).log()


def _diag_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """mean_i ( logsumexp_j l_ij - l_ii ) per leading index."""
    return (_logsumexp(logits) - torch.diagonal(logits, dim1=-2, dim2=-1)).mean(-1)


LOSSES: dict[str, LossFn] = {"distance": distance_infonce, "dot": dot_infonce}


def get_loss(name: str) -> LossFn:
    """The toy loss called ``name`` ('distance' = DC eq. 2, 'dot' = z1 z2^T / 0.1); else ConfigError."""
    if name not in LOSSES:
        raise unknown_name("loss", name, list(LOSSES))
    return LOSSES[name]


def softmax_weights(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """alpha_ij = softmax_j(l_ij) of DC eq. 2 (alpha_ii weighs the positive pair)."""
    return F.softmax(distance_logits(z1, z2), dim=-1)
