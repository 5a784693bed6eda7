"""What ``CollapseMetrics.update`` accepts, checked before any state changes (one-line InputError otherwise).

- a tensor, numpy array or nested list of numbers, shaped (batch, dim) for ``z`` and
  (samples, views, dim) for ``views``; real-valued (complex refused, as the CLI does), finite;
- a model's output object (a Hugging Face ``ModelOutput`` or any dict of tensors): its one (batch, dim)
  tensor field is taken (``pooler_output`` of a ``BaseModelOutputWithPooling``, ``image_embeds`` of a
  CLIP output, ...); with none or several the error names the fields and what to pass instead
  (e.g. ``out.last_hidden_state[:, 0]`` for the first token, ``.mean(1)`` for the mean over tokens).
  This is the rule the monitor applies to a dict output (``probe.py``), for a single stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from dimcollapse.diagnostics.engine.inputs import as_tensor
from dimcollapse.errors import InputError

_SHAPES = {2: "(batch, dim)", 3: "(samples, views, dim)"}


def model_output_field(out: Mapping[str, Any], name: str) -> Tensor:
    """The one (batch, dim) tensor of a model output / dict; InputError naming the fields otherwise."""
    tensors = {str(k): v for k, v in out.items() if isinstance(v, Tensor)}
    rows = [k for k, v in tensors.items() if v.ndim == 2]
    if len(rows) == 1:
        return tensors[rows[0]]
    kind = type(out).__name__
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items()) or "no tensors"
    if rows:
        raise InputError(
            f"CollapseMetrics.update: {name} is a {kind} with several (batch, dim) fields ({shapes}); "
            f"pass the one to measure, e.g. update(out.{rows[0]})."
        )
    hint = (
        "update(out.last_hidden_state[:, 0]) for the first token or update(out.last_hidden_state.mean(1)) "
        "for the mean over tokens"
        if "last_hidden_state" in tensors
        else "one (batch, dim) tensor"
    )
    raise InputError(
        f"CollapseMetrics.update: {name} is a {kind} with no (batch, dim) field ({shapes}); pass {hint}."
    )


def metric_rows(value: Any, name: str, ndim: int, l2_normalize: bool = False) -> Tensor:
    """``value`` as a finite float64 tensor with ``ndim`` dims (see the module docstring)."""
    if isinstance(value, Mapping):
        value = model_output_field(value, name)
    t = as_tensor(value, f"CollapseMetrics.update: {name}")
    if t.ndim != ndim:
        raise InputError(
            f"CollapseMetrics.update: {name} must have shape {_SHAPES[ndim]}, got {tuple(t.shape)}"
            + (". Add a batch dimension, e.g. z[None]." if t.ndim == ndim - 1 and t.ndim else ".")
        )
    if t.shape[-1] < 1:
        raise InputError(f"CollapseMetrics.update: {name} has no features (shape {tuple(t.shape)}).")
    t = t.detach().to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise InputError(f"CollapseMetrics.update: {name} contains NaN or Inf; the model diverged.")
    if l2_normalize:
        t = t / torch.linalg.vector_norm(t, dim=-1, keepdim=True).clamp_min(1e-300)
    return t


def overflow_error(t: Tensor, name: str) -> InputError:
    """The error for finite values whose products overflow float64."""
    return InputError(
        f"CollapseMetrics.update: {name} has values so large that their squares overflow float64 "
        f"(max |z| = {float(t.abs().max()):.3g}). Rescale the data, e.g. z / z.abs().max()."
    )


__all__ = ["metric_rows", "model_output_field", "overflow_error"]
