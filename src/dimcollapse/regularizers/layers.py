"""Select the weight layers a weight regularizer acts on, by name pattern (fnmatch or ``re:`` regex)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

import torch
from torch import nn

from dimcollapse.diagnostics.weights import weight_layers
from dimcollapse.errors import ConfigError


def layer_weight(module: nn.Module) -> torch.Tensor | None:
    """The matrix-like weight of a layer: ``weight`` (Linear/Conv) or ``in_proj_weight`` (attention)."""
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() >= 2:
        return weight
    in_proj = getattr(module, "in_proj_weight", None)
    if isinstance(in_proj, torch.Tensor) and in_proj.dim() == 2:
        return in_proj
    return None


def _module_weight_layers(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """Every Conv/Linear/attention layer of ``module`` (named ``prefix + name``), or its weight_layers()."""
    listing = getattr(module, "weight_layers", None)
    if callable(listing):
        found = list(listing())
    else:
        found = [(name, m) for name, m in weight_layers(module) if layer_weight(m) is not None]
    return [(f"{prefix}.{name}" if prefix and name else prefix or name, m) for name, m in found]


def candidate_layers(
    model: nn.Module, include_projector: bool = False, include_predictor: bool = False
) -> list[tuple[str, nn.Module]]:
    """Weight layers of a backbone, or of an SSLModel (children backbone/projector/objective), prefixed."""
    children = dict(model.named_children())
    if "backbone" in children and not hasattr(model, "weight_layers"):
        layers = _module_weight_layers(children["backbone"], "backbone")
        if include_projector and "projector" in children:
            layers += _module_weight_layers(children["projector"], "projector")
        if include_predictor and "objective" in children:
            objective = children["objective"]
            predictor = getattr(objective, "predictor", None)
            if isinstance(predictor, nn.Module):
                layers += _module_weight_layers(predictor, "objective.predictor")
            else:
                layers += _module_weight_layers(objective, "objective")
        return layers
    return _module_weight_layers(model, "")


def _matches(name: str, pattern: str) -> bool:
    if pattern.startswith("re:"):
        return re.search(pattern[3:], name) is not None
    short = name.split("backbone.", 1)[1] if name.startswith("backbone") else name
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(short, pattern)


def select_weight_layers(
    model: nn.Module,
    layers: str | Sequence[str] | None = None,
    include_projector: bool = False,
    include_predictor: bool = False,
) -> list[tuple[str, torch.Tensor]]:
    """(name, weight) of the layers whose name matches any pattern (fnmatch, or regex after ``re:``).

    Default (``layers=None``): every conv and linear weight of the backbone (plus projector / predictor
    when asked). Backbone layers match with or without the ``backbone.`` prefix.
    """
    candidates = candidate_layers(model, include_projector, include_predictor)
    weights = [(name, w) for name, m in candidates if (w := layer_weight(m)) is not None]
    if not weights:
        raise ConfigError(
            f"the model {type(model).__name__} has no weight layers (conv / linear) for a weight "
            "regularizer. Use a backbone with weights, or a feature regularizer (ldreg, minlid, whitening)."
        )
    if layers is None:
        return weights
    patterns = [layers] if isinstance(layers, str) else list(layers)
    chosen: list[tuple[str, torch.Tensor]] = []
    for pattern in patterns:
        hits = [(n, w) for n, w in weights if _matches(n, pattern)]
        if not hits:
            names = ", ".join(n for n, _ in weights)
            raise ConfigError(
                f"layer pattern '{pattern}' matches no weight layer. Layer names: {names}. "
                "Use a glob (e.g. 'layer4.*') or a regex prefixed with 're:'."
            )
        chosen += [(n, w) for n, w in hits if all(n != c for c, _ in chosen)]
    order = {n: i for i, (n, _) in enumerate(weights)}
    return sorted(chosen, key=lambda item: order[item[0]])


def last_weight_layer(model: nn.Module, name: str | None = None) -> tuple[str, torch.Tensor]:
    """The backbone's last weight layer (``backbone.last_layer_name``), or the layer called ``name``."""
    children = dict(model.named_children())
    backbone = (
        children["backbone"] if "backbone" in children and not hasattr(model, "weight_layers") else model
    )
    prefix = "backbone." if backbone is not model else ""
    weights = select_weight_layers(backbone)
    if name is None:
        name = getattr(backbone, "last_layer_name", None)
        if name is None:
            return prefix + weights[-1][0], weights[-1][1]
    for layer_name, w in weights:
        if name in (layer_name, prefix + layer_name):
            return prefix + layer_name, w
    listing = ", ".join(n for n, _ in weights)
    raise ConfigError(f"last layer '{name}' is not a weight layer of the backbone. Layer names: {listing}.")
