"""A fixed probe set and the ``embed(module, x)`` contract that turns it into named embeddings.

``probe``: a tensor of inputs (one batch), a DataLoader / iterable of batches (a batch is the inputs, an
(inputs, labels, ...) tuple, or a dict of model inputs such as ``{"pixel_values": ...}``), read once and
kept. ``embed(module, x)`` returns a 2-D tensor (named ``"z"``) or a dict of 2-D tensors (e.g.
``{"r": backbone(x), "z": head(backbone(x))}``); the default is ``module(x)`` (a dict output keeps its
2-D tensors, e.g. a Hugging Face ``pooler_output``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dimcollapse.errors import ConfigError, InputError

Embed = Callable[[nn.Module, Any], "Tensor | Mapping[str, Tensor]"]
_HINT = "pass embed=lambda module, x: ... returning a (batch, dim) tensor or a dict of them"


def default_embed(module: nn.Module, x: Any) -> Any:
    """``module(x)`` (``module(**x)`` for a dict of inputs); a module without forward() is a ConfigError."""
    try:
        return module(**x) if isinstance(x, Mapping) else module(x)
    except NotImplementedError:
        raise ConfigError(
            f"{type(module).__name__} has no forward(), so the embeddings are unknown: {_HINT} "
            "(e.g. embed=lambda m, x: m.backbone(x))."
        ) from None


def _as_rows(name: str, t: Any) -> Tensor:
    if not isinstance(t, Tensor):
        raise InputError(f"embed output '{name}' is a {type(t).__name__}, not a tensor; {_HINT}.")
    if t.ndim != 2:
        raise InputError(
            f"embed output '{name}' has shape {tuple(t.shape)}, not (batch, dim); {_HINT} "
            "(pool first, e.g. m(x).mean(1) over tokens or m(x).flatten(1))."
        )
    return t.detach().to("cpu", torch.float64)


def named_outputs(out: Any) -> dict[str, Tensor]:
    """An embed result as {name: (batch, dim) float64 CPU tensor}; a dict output keeps its 2-D tensors."""
    if isinstance(out, Tensor):
        return {"z": _as_rows("z", out)}
    if isinstance(out, Mapping):
        rows = {str(k): v for k, v in out.items() if isinstance(v, Tensor) and v.ndim == 2}
        if not rows:
            shapes = {str(k): tuple(v.shape) for k, v in out.items() if isinstance(v, Tensor)}
            raise InputError(f"the model returned a dict with no (batch, dim) tensor ({shapes}); {_HINT}.")
        return {k: _as_rows(k, v) for k, v in rows.items()}
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return {"z": _as_rows("z", out[0])}
    raise InputError(f"embed returned a {type(out).__name__}; {_HINT}.")


def _inputs(batch: Any) -> Any:
    if isinstance(batch, (tuple, list)):
        return batch[0]
    return batch


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, Tensor):
        return x.to(device)
    if isinstance(x, Mapping):
        return {k: _to(v, device) for k, v in x.items()}
    return x


def module_device(module: nn.Module) -> torch.device:
    """Device of the module's first parameter (or buffer), CPU when it has none."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


class Probe:
    """A fixed set of input batches and the embed function applied to them."""

    def __init__(self, probe: Any, embed: Embed | None = None) -> None:
        """``probe``: tensor or iterable of batches (see module docstring); ``embed`` default module(x)."""
        if probe is None:
            raise ConfigError(
                "a probe is needed: pass a fixed batch of inputs (a tensor) or a DataLoader of held-out data."
            )
        if embed is not None and not callable(embed):
            raise ConfigError(
                f"embed must be a function (module, x) -> embeddings, got {type(embed).__name__}."
            )
        self.embed: Embed = embed or default_embed
        self._source = probe
        self._batches: list[Any] | None = [probe] if isinstance(probe, (Tensor, Mapping)) else None

    @property
    def batches(self) -> list[Any]:
        """The probe's input batches (a DataLoader is read once, at first use)."""
        if self._batches is None:
            if not isinstance(self._source, Iterable):
                raise ConfigError(
                    f"probe must be a tensor or a DataLoader, got {type(self._source).__name__}."
                )
            self._batches = [_inputs(b) for b in self._source]
            if not self._batches:
                raise InputError("the probe DataLoader yielded no batch; give it held-out data.")
        return self._batches

    @property
    def size(self) -> int:
        """Number of probe rows."""
        total = 0
        for b in self.batches:
            first = next(iter(b.values())) if isinstance(b, Mapping) else b
            total += int(first.shape[0])
        return total

    @torch.no_grad()
    def outputs(self, module: nn.Module, transform: Callable[[Any], Any] | None = None) -> dict[str, Tensor]:
        """{name: float64 (rows, dim)} of every probe batch (``transform``-ed), module in eval mode."""
        was_training = module.training
        device = module_device(module)
        module.eval()
        parts: dict[str, list[Tensor]] = {}
        try:
            for x in self.batches:
                x = transform(x) if transform is not None else x
                for name, t in named_outputs(self.embed(module, _to(x, device))).items():
                    parts.setdefault(name, []).append(t)
        finally:
            module.train(was_training)
        return {name: torch.cat(ts) for name, ts in parts.items()}


__all__ = ["Embed", "Probe", "default_embed", "module_device", "named_outputs"]
