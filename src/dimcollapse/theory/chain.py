"""A stack of bias-free square layers z = W_L s(... s(W_1 x)), trained by plain SGD on two noisy views.

Several independent replicas (e.g. one per noise level) are trained at once: every weight has shape
(R, d, d) and replica r only ever sees its own loss, so one Python loop serves the whole sweep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from dimcollapse.errors import ConfigError
from dimcollapse.theory.data import batch_stream
from dimcollapse.theory.gradients import chain_step_grads
from dimcollapse.theory.losses import get_loss


def chain_forward(
    weights: list[torch.Tensor], x: torch.Tensor, slopes: list[torch.Tensor] | None = None
) -> torch.Tensor:
    """z = W_L s(... s(W_1 x)), x (N, d) or (R, N, d), weights (R, d, d); leaky s, slopes[l] (0 = ReLU)."""
    h = x
    for i, w in enumerate(weights):
        h = h @ w.transpose(-1, -2)
        if slopes is not None and i < len(weights) - 1:
            h = torch.where(h > 0, h, slopes[i] * h)
    return h


@dataclass
class ChainHistory:
    """What a training run recorded: steps, per-replica loss, singular values of every layer, spectra."""

    steps: list[int] = field(default_factory=list)
    loss: list[list[float]] = field(default_factory=list)
    singular_values: list[np.ndarray] = field(default_factory=list)  # each (R, L, d)
    spectra: list[np.ndarray] = field(default_factory=list)  # each (R, d), embedding covariance eigenvalues
    diverged_at: int | None = None


def embedding_spectra(
    weights: list[torch.Tensor], data: torch.Tensor, slopes: list[torch.Tensor] | None = None
) -> np.ndarray:
    """Covariance eigenvalues (descending) of z = f(x) on the clean data, one row per replica (DC eq. 1)."""
    from dimcollapse.diagnostics import covariance_spectrum

    with torch.no_grad():
        z = chain_forward([w.detach().double() for w in weights], data.double(), slopes)
    return np.stack([np.asarray(covariance_spectrum(z[r]), dtype=np.float64) for r in range(z.shape[0])])


def train_chain(
    weights: list[torch.Tensor],
    data: torch.Tensor,
    noise_std: torch.Tensor,
    *,
    steps: int,
    lr: float,
    loss: str,
    batch: int = 128,
    slopes: list[torch.Tensor] | None = None,
    trainable: list[torch.Tensor] | None = None,
    generator: torch.Generator,
    record_every: int = 50,
    record_spectra: bool = False,
) -> ChainHistory:
    """Plain SGD W <- W - lr dL/dW (closed-form gradients) on views x + noise_std * e, noise_std (R, d).

    ``weights`` (list of (R, d, d) float64 tensors) are updated in place; ``slopes`` as in
    ``chain_step_grads``; ``trainable[l]`` (R, 1, 1) of 0/1 freezes layer l of some replicas (padding).
    Records every ``record_every`` steps, at step 0 and at the end.
    Stops early (``diverged_at``) if a loss becomes non-finite.
    """
    if steps < 0:
        raise ConfigError(f"steps must be >= 0, got {steps}.")
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr must be a positive finite number, got {lr}.")
    get_loss(loss)  # validates the name
    scale = noise_std.to(data.dtype).unsqueeze(-2)  # (R, 1, d)
    if any(w.dtype != data.dtype for w in weights):
        raise ConfigError("weights and data must share one dtype; cast both with training_dtype().")
    params = [w.detach() for w in weights]
    if slopes is not None:
        slopes = [s.to(data.dtype) for s in slopes]
    if trainable is not None:
        trainable = [t.to(data.dtype) for t in trainable]
    hist = ChainHistory()

    def record(step: int, value: torch.Tensor | None) -> None:
        with torch.no_grad():
            hist.steps.append(step)
            hist.singular_values.append(torch.stack([torch.linalg.svdvals(w) for w in params], 1).numpy())
            hist.loss.append([] if value is None else value.detach().tolist())
            if record_spectra:
                hist.spectra.append(embedding_spectra(params, data, slopes))

    record(0, None)
    step = 0
    for step, b in enumerate(batch_stream(data, batch, steps, generator), start=1):
        v1 = b.x + scale * b.e1
        v2 = b.x + scale * b.e2
        per_replica, grads = chain_step_grads(params, v1, v2, loss, slopes)
        for i, (w, g) in enumerate(zip(params, grads, strict=True)):
            w.sub_(lr * g if trainable is None else lr * g * trainable[i])
        if step % record_every == 0 or step == steps:
            finite = bool(torch.isfinite(per_replica).all()) and all(
                bool(torch.isfinite(w).all()) for w in params
            )
            if not finite:
                hist.diverged_at = step
                break
            record(step, per_replica)
    return hist


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def training_dtype(name: str) -> torch.dtype:
    """torch dtype for training ('float32' is ~2x faster on CPU; spectra are always taken in float64)."""
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype '{name}'. Valid: {', '.join(DTYPES)}.")
    return DTYPES[name]


def orthogonal(d: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-random orthogonal d x d matrix (QR of a Gaussian matrix with the sign fix)."""
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


def default_init(replicas: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """nn.Linear's default init without bias: W_ij ~ U(-1/sqrt(d), 1/sqrt(d)), shape (R, d, d)."""
    bound = 1.0 / math.sqrt(d)
    return (torch.rand(replicas, d, d, generator=generator, dtype=torch.float64) * 2 - 1) * bound
