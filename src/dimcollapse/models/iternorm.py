"""Iterative Normalization (IterNorm; Huang, Zhou, Zhu, Liu & Shao, CVPR 2019): group-wise whitening of
a batch by Newton-Schulz iterations instead of an eigendecomposition.

For each group of c consecutive features (the C features split into g = C / c groups), with the batch
mean mu and the biased covariance Sigma = (1/N) sum_i (x_i - mu)(x_i - mu)^T + eps I:

    Sigma_N = Sigma / tr(Sigma),  P_0 = I,  P_{k+1} = (3 P_k - P_k^3 Sigma_N) / 2  (k < T),
    W = P_T / sqrt(tr(Sigma))  (-> Sigma^{-1/2} as T grows),  y = W (x - mu),  out = gamma * y + beta.

Training mode uses the batch statistics and updates running estimates, running <- (1 - m) running + m
batch, of mu and of W itself (as the paper's code); eval mode applies y = W_running (x - mu_running), so a
row's output does not depend on the other rows. The statistics are those of the batch the layer receives
on this process (like ``nn.BatchNorm1d`` without sync). Computed in >= float32 under mixed precision.
This uncoupled Newton-Schulz iteration is stable in floating point only for a well-conditioned Sigma
(Higham 2008, section 6.4): many iterations on an ill-conditioned batch diverge, which is why IterNorm
stops early (T = 5), whitening the large directions and only shrinking the spread of the small ones.
VIbCReg (Lee & Aune 2021) puts it at the end of its projector (``models/projectors/vibcreg.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dimcollapse.errors import ConfigError, InputError


def newton_schulz_whitening(sigma: Tensor, iterations: int) -> Tensor:
    """W = P_T / sqrt(tr Sigma), P_{k+1} = (3 P_k - P_k^3 Sigma_N) / 2, P_0 = I, Sigma_N = Sigma / tr Sigma.

    ``sigma`` is a batch of covariance matrices [g, c, c]; W -> Sigma^{-1/2} for symmetric positive
    definite Sigma as T grows (the eigenvalues of Sigma_N lie in (0, 1], where the iteration converges).
    """
    trace = torch.diagonal(sigma, dim1=-2, dim2=-1).sum(-1)[:, None, None]
    sigma_n = sigma / trace
    p = torch.eye(sigma.shape[-1], dtype=sigma.dtype, device=sigma.device).expand_as(sigma)
    for _ in range(iterations):
        p = 1.5 * p - 0.5 * torch.linalg.matrix_power(p, 3) @ sigma_n
    return p / torch.sqrt(trace)


def _check_options(num_features: int, groups: int, iterations: int, eps: float, momentum: float) -> None:
    """Raise ConfigError naming the first invalid IterNorm option and its valid range."""
    for key, value in (("num_features", num_features), ("groups", groups), ("iterations", iterations)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"iternorm: {key} must be an integer >= 1, got {value!r}.")
    if num_features % groups:
        raise ConfigError(
            f"iternorm: groups = {groups} does not divide the {num_features} features; choose a divisor of "
            f"{num_features} (VIbCReg uses 64 groups)."
        )
    if not (isinstance(eps, int | float) and 0 <= eps < float("inf")):
        raise ConfigError(f"iternorm: eps must be a finite number >= 0, got {eps!r}.")
    if not (isinstance(momentum, int | float) and 0 <= momentum <= 1):
        raise ConfigError(f"iternorm: momentum must be in [0, 1], got {momentum!r}.")


class IterNorm(nn.Module):
    """out = gamma * W (x - mu) + beta per group of C / groups features, W = Newton-Schulz Sigma^{-1/2}."""

    running_mean: Tensor
    running_wm: Tensor

    def __init__(
        self,
        num_features: int,
        groups: int = 64,
        iterations: int = 5,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
    ) -> None:
        super().__init__()
        _check_options(num_features, groups, iterations, eps, momentum)
        self.num_features, self.groups, self.iterations = num_features, groups, iterations
        self.group_size = num_features // groups
        self.eps, self.momentum, self.affine = float(eps), float(momentum), bool(affine)
        c = self.group_size
        self.register_buffer("running_mean", torch.zeros(groups, c))
        self.register_buffer("running_wm", torch.eye(c).expand(groups, c, c).clone())
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None

    def extra_repr(self) -> str:
        """Options shown by print(module)."""
        return (
            f"{self.num_features}, groups={self.groups}, iterations={self.iterations}, eps={self.eps}, "
            f"momentum={self.momentum}, affine={self.affine}"
        )

    def batch_statistics(self, xg: Tensor) -> tuple[Tensor, Tensor]:
        """(mu [g, c], W [g, c, c]) of grouped rows xg [g, N, c]: mean and Newton-Schulz Sigma^{-1/2}."""
        n = xg.shape[1]
        mean = xg.mean(dim=1)
        centred = xg - mean[:, None, :]
        eye = torch.eye(self.group_size, dtype=xg.dtype, device=xg.device)
        sigma = centred.transpose(1, 2) @ centred / n + self.eps * eye
        return mean, newton_schulz_whitening(sigma, self.iterations)

    def forward(self, x: Tensor) -> Tensor:
        """out = gamma * W (x - mu) + beta; batch statistics in training, running ones in eval."""
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise InputError(
                f"iternorm expects rows of shape [N, {self.num_features}], got {list(x.shape)}; "
                "build it with num_features equal to the previous layer's output size."
            )
        if self.training and x.shape[0] < 2:
            raise InputError(
                "iternorm: whitening in training mode needs a batch of at least 2 rows, got "
                f"{x.shape[0]}; increase the batch size or call model.eval() for single rows."
            )
        dtype = x.dtype
        with torch.autocast(x.device.type, enabled=False):  # the iterations in >= float32
            x32 = x.float() if dtype in (torch.float16, torch.bfloat16) else x
            xg = x32.reshape(x32.shape[0], self.groups, self.group_size).transpose(0, 1)  # [g, N, c]
            if self.training:
                mean, wm = self.batch_statistics(xg)
                with torch.no_grad():
                    self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
                    self.running_wm.lerp_(wm.detach().to(self.running_wm.dtype), self.momentum)
            else:
                mean, wm = self.running_mean.to(xg.dtype), self.running_wm.to(xg.dtype)
            y = (xg - mean[:, None, :]) @ wm.transpose(1, 2)  # row i: W (x_i - mu)
            out = y.transpose(0, 1).reshape(x32.shape[0], self.num_features)
            if self.weight is not None and self.bias is not None:
                out = out * self.weight + self.bias
        return out.to(dtype)
