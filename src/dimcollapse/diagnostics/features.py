"""Spectra of hidden features, captured with forward hooks and streamed batch by batch (SPEC 1.5).

``feature_spectra(model, batches, layers)`` runs the model (eval mode, no grad) on every batch, hooks the
chosen layers and feeds their outputs to one float64 covariance accumulator each, so no layer's
features are ever held whole. Layer names are ``named_modules`` names plus two special names:
``"input"`` (the batch itself) and ``"output"`` (the model's output). Default layers: ``"input"``,
every top-level child that runs, and ``"output"``.

How a layer's output becomes a (rows x features) matrix (``pool``):
- 2-D outputs (N, F) are used as they are;
- ``"mean"`` (default): outputs (N, C, *spatial) of convolutions and their norms/pools (channels
  first) are averaged over the spatial positions -> (N, C); 3-D outputs of any other module are
  transformer tokens (N, T, E) and are averaged over the T tokens -> (N, E);
- ``"positions"``: every spatial position (or token) is a row of C channels (E features);
- ``"flatten"``: (N, C * prod(spatial)) per sample;
- ``"tokens"`` / ``"cls"``: 3-D token outputs (N, T, E) averaged over tokens / the first (class) token;
- a callable mapping the output tensor to a 2-D tensor.
The ``"input"`` entry is always flattened per sample (pixels are the features).
Tuple outputs use their first tensor (e.g. ``nn.MultiheadAttention``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from dimcollapse.diagnostics.spectrum import CovarianceAccumulator, spectrum_of
from dimcollapse.errors import ConfigError, InputError

Pool = str | Callable[[torch.Tensor], torch.Tensor]
POOLS = ("mean", "positions", "flatten", "tokens", "cls")

# Modules whose 3-D outputs are (N, C, L) channels first; every other 3-D output is (N, T, E) tokens.
_CHANNELS_FIRST_1D = (
    nn.Conv1d,
    nn.ConvTranspose1d,
    nn.BatchNorm1d,
    nn.InstanceNorm1d,
    nn.MaxPool1d,
    nn.AvgPool1d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveMaxPool1d,
)


def to_rows(t: torch.Tensor, pool: Pool, tokens: bool = False) -> torch.Tensor:
    """Turn one layer output into a 2-D (rows x features) matrix according to ``pool``.

    ``tokens=True`` says a 3-D output is (N, T, E) transformer tokens (features last), so ``"mean"``
    averages over the T tokens and ``"positions"`` makes each token a row; otherwise (N, C, L) channels first.
    """
    if callable(pool):
        out = pool(t)
        if out.ndim != 2:
            raise InputError(f"the pool callable must return a 2-D tensor, got shape {tuple(out.shape)}.")
        return out
    if t.ndim == 2:
        return t
    if t.ndim < 2:
        return t.reshape(t.shape[0] if t.ndim else 1, -1)
    if pool in ("tokens", "cls"):
        if t.ndim != 3:
            raise InputError(f"pool='{pool}' needs token outputs (N, T, E); got shape {tuple(t.shape)}.")
        return t.mean(1) if pool == "tokens" else t[:, 0]
    if tokens and t.ndim == 3:
        if pool == "mean":
            return t.mean(1)
        if pool == "positions":
            return t.reshape(-1, t.shape[2])
        return t.reshape(t.shape[0], -1)
    if pool == "mean":
        return t.flatten(2).mean(2)
    if pool == "positions":
        return t.flatten(2).transpose(1, 2).reshape(-1, t.shape[1])
    if pool == "flatten":
        return t.reshape(t.shape[0], -1)
    raise ConfigError(f"unknown pool '{pool}'. Valid: {', '.join(POOLS)} or a callable.")


def _first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, torch.Tensor):
                return o
    return None


def feature_spectra(
    module: nn.Module,
    batches: Iterable[Any],
    layers: list[str] | None = None,
    pool: Pool = "mean",
    center: bool = True,
    l2_normalize: bool = False,
    max_dim: int = 4096,
    forward: Callable[[nn.Module, torch.Tensor], Any] | None = None,
    skip_idle: bool = False,
) -> dict[str, np.ndarray]:
    """Covariance spectrum (SPEC 1.1) of the activations of each chosen layer via forward hooks, by name.

    ``batches`` yields input tensors or (input, label) pairs. See the module docstring for ``pool``.
    Layers whose feature size exceeds ``max_dim`` raise ConfigError (use ``pool="mean"``).
    ``forward(module, x)`` runs the model (default ``module(x)``; e.g. an encoder of a module without
    forward); a chosen layer that never runs raises InputError, or is left out with ``skip_idle``.
    """
    if isinstance(pool, str) and pool not in POOLS:
        raise ConfigError(f"unknown pool '{pool}'. Valid: {', '.join(POOLS)} or a callable.")
    modules = dict(module.named_modules())
    explicit = layers is not None
    if layers is None:
        layers = ["input", *[n for n, _ in module.named_children()], "output"]
    unknown = [n for n in layers if n not in ("input", "output") and n not in modules]
    if unknown:
        valid = ", ".join(["input", "output", *[n for n in modules if n]])
        raise ConfigError(f"unknown layer name(s) {unknown}. Valid names: {valid}.")
    accs = {
        name: CovarianceAccumulator(center, l2_normalize, name=f"features of '{name}'") for name in layers
    }

    def feed(name: str, t: torch.Tensor, how: Pool, tokens: bool = False) -> None:
        rows = to_rows(t.detach(), how, tokens)
        if rows.shape[1] > max_dim:
            raise ConfigError(
                f"layer '{name}' has {rows.shape[1]} features per row (> max_dim={max_dim}); "
                "its covariance would not fit. Use pool='mean' or raise max_dim."
            )
        accs[name].update(rows)

    handles = []
    for name in layers:
        if name in ("input", "output"):
            continue

        def hook(_m: nn.Module, _inp: Any, out: Any, name: str = name) -> None:
            t = _first_tensor(out)
            if t is not None:
                feed(name, t, pool, tokens=not isinstance(_m, _CHANNELS_FIRST_1D))

        handles.append(modules[name].register_forward_hook(hook))
    was_training = module.training
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    module.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                x = torch.as_tensor(x).to(device)
                if "input" in accs:
                    feed("input", x.float() if not x.is_floating_point() else x, "flatten")
                out = _first_tensor(module(x) if forward is None else forward(module, x))
                if "output" in accs and out is not None:
                    feed("output", out, pool, tokens=not isinstance(module, _CHANNELS_FIRST_1D))
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    result: dict[str, np.ndarray] = {}
    for name, acc in accs.items():
        if acc.n == 0 and acc.bad_rows == 0:
            if explicit and not skip_idle:
                raise InputError(f"layer '{name}' never ran during the forward pass; no features captured.")
            continue
        result[name] = spectrum_of(acc.covariance())
    return result
