"""Closed-form gradients of the toy losses and of the layer chain (no autograd: ~3x fewer passes).

dL/dl = G = (P - I) / N for InfoNCE with softmax P of the logits l, targets the diagonal. Then
- dot (l = z1 z2^T / t):            dL/dz1 = G z2 / t,  dL/dz2 = G^T z1 / t;
- distance (DC eq. 2, l_ij = -|z1_i - z1_j|^2/2 off the diagonal, l_ii = -|z1_i - z2_i|^2/2):
  with M = offdiag(G), g = diag(G): dL/dz1 = (M + M^T) z1 - rowsum(M + M^T) * z1 - g * (z1 - z2),
  dL/dz2 = g * (z1 - z2).
Checked against autograd of ``losses.py`` in tests/test_theory_losses.py.
"""

from __future__ import annotations

import torch

from dimcollapse.errors import unknown_name

_FLOOR = -80.0


def _softmax_(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row softmax in place (shifted terms floored at e^-80); returns (P, logsumexp per row)."""
    m = logits.amax(-1, keepdim=True)
    p = logits.sub_(m).clamp_min_(_FLOOR).exp_()
    s = p.sum(-1, keepdim=True)
    p.div_(s)
    return p, (m + s.log()).squeeze(-1)


def loss_and_embedding_grads(
    loss: str, z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss per replica, dL/dz1, dL/dz2) for z (R, N, d); loss is the mean over the N anchors."""
    n = z1.shape[-2]
    if loss == "dot":
        logits = z1 @ z2.transpose(-1, -2) / temperature
        pos = torch.diagonal(logits, dim1=-2, dim2=-1).clone()
        p, lse = _softmax_(logits)
        g = p
        torch.diagonal(g, dim1=-2, dim2=-1).sub_(1.0)
        g.div_(n)
        return (lse - pos).mean(-1), g @ z2 / temperature, g.transpose(-1, -2) @ z1 / temperature
    if loss == "distance":
        sq = (z1 * z1).sum(-1)
        logits = z1 @ z1.transpose(-1, -2)
        logits.mul_(2.0).sub_(sq.unsqueeze(-1)).sub_(sq.unsqueeze(-2)).mul_(0.5)
        diff = z1 - z2
        pos = -0.5 * (diff * diff).sum(-1)
        torch.diagonal(logits, dim1=-2, dim2=-1).copy_(pos)
        p, lse = _softmax_(logits)
        gdiag = (torch.diagonal(p, dim1=-2, dim2=-1) - 1.0) / n
        m = p.div_(n)
        torch.diagonal(m, dim1=-2, dim2=-1).zero_()
        r = (m.sum(-1) + m.sum(-2)).unsqueeze(-1)
        dz2 = gdiag.unsqueeze(-1) * diff
        dz1 = m @ z1 + m.transpose(-1, -2) @ z1 - r * z1 - dz2
        return (lse - pos).mean(-1), dz1, dz2
    raise unknown_name("loss", loss, ["distance", "dot"])


def chain_step_grads(
    weights: list[torch.Tensor],
    v1: torch.Tensor,
    v2: torch.Tensor,
    loss: str,
    slopes: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(loss per replica, dL/dW_l per layer) of z = W_L s(... s(W_1 v)) on views v1, v2 (backprop by hand).

    s after layer l (l < L) is leaky: s(a) = a if a > 0 else slopes[l] * a (slope 0 = ReLU, 1 = linear),
    slopes[l] broadcastable to (R, 1, 1); None means a linear chain. With a_l = h_{l-1} W_l^T:
    dL/dW_l = delta_l^T h_{l-1}, delta_{l-1} = (delta_l W_l) * s'(a_{l-1}).
    """
    acts: list[list[torch.Tensor]] = []
    masks: list[list[torch.Tensor]] = []
    outs: list[torch.Tensor] = []
    last = len(weights) - 1
    for v in (v1, v2):
        hs, ds = [v], []
        h = v
        for i, w in enumerate(weights):
            h = h @ w.transpose(-1, -2)
            if slopes is not None and i < last:
                d = torch.where(h > 0, torch.ones_like(h), slopes[i].expand_as(h))
                h = h * d
                ds.append(d)
            hs.append(h)
        acts.append(hs)
        masks.append(ds)
        outs.append(h)
    value, d1, d2 = loss_and_embedding_grads(loss, outs[0], outs[1])
    grads = [torch.zeros(w.shape, dtype=w.dtype) for w in weights]
    for hs, ds, delta in zip(acts, masks, (d1, d2), strict=True):
        for i in range(last, -1, -1):
            grads[i] += delta.transpose(-1, -2) @ hs[i]
            if i > 0:
                delta = delta @ weights[i]
                if slopes is not None:
                    delta = delta * ds[i - 1]
    return value, grads
