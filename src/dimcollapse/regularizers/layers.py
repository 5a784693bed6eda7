"""Select the weight layers a weight regularizer acts on, by name pattern (fnmatch or ``re:`` regex)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dimcollapse.diagnostics.layer_names import PATTERN_HELP, matching, name_matches
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


# Child names that hold the encoder, and names of heads that sit on top of it (lightly, solo-learn, timm, HF).
ENCODER_NAMES = ("backbone", "encoder", "feature_extractor", "trunk")
PROJECTOR_NAMES = ("projector", "projection_head", "projection", "head", "heads")
PREDICTOR_NAMES = ("predictor", "prediction_head")
_HEAD_NAMES = (*PROJECTOR_NAMES, *PREDICTOR_NAMES, "objective", "classifier")

Heads = bool | str | Sequence[str]


def _has_weights(module: nn.Module) -> bool:
    return any(layer_weight(m) is not None for m in module.modules())


def find_encoder(model: nn.Module, encoder: str | None = None) -> tuple[str, nn.Module, list[str]]:
    """(name, module, head children to leave out) of the encoder inside ``model``.

    Order: the submodule the user names; the model itself when it is a backbone (``weight_layers``);
    a child called backbone / encoder / feature_extractor / trunk; else the model without its head
    children (projector, projection_head, head, predictor, ...). An ``nn.Sequential`` of two or more
    sub-networks with weights and no such names is ambiguous and refused (name the encoder).
    """
    modules = dict(model.named_modules())
    children = dict(model.named_children())
    if encoder is not None:
        if encoder not in modules or encoder == "":
            listing = ", ".join(n for n in children) or "(none)"
            raise ConfigError(
                f"encoder '{encoder}' is not a submodule of {type(model).__name__}. Its children: {listing}. "
                "Pass the encoder's named_modules name (e.g. encoder='0' for nn.Sequential(encoder, head))."
            )
        return encoder, modules[encoder], []
    if callable(getattr(model, "weight_layers", None)):
        return "", model, []
    for name in ENCODER_NAMES:
        if name in children:
            return name, children[name], []
    heads = [n for n in children if n in _HEAD_NAMES]
    if heads:
        return "", model, heads
    subnets = [n for n, c in children.items() if _has_weights(c) and len(list(c.children())) > 0]
    if isinstance(model, nn.Sequential) and len(subnets) >= 2:
        raise ConfigError(
            f"cannot tell the encoder from the head in nn.Sequential with sub-networks {subnets}: name it, "
            f"e.g. encoder='{subnets[0]}' (and layer=... for the last layer), or name the children "
            "backbone / projection_head."
        )
    return "", model, []


def _head_children(model: nn.Module, heads: Heads, defaults: tuple[str, ...]) -> list[str]:
    """Head children to include: the usual names present when True, else the names / patterns given."""
    if heads is False:
        return []
    children = [n for n, _ in model.named_children()]
    if heads is True:
        return [n for n in children if n in defaults]
    patterns = [heads] if isinstance(heads, str) else list(heads)
    return matching(children, patterns)


def candidate_layers(
    model: nn.Module,
    include_projector: Heads = False,
    include_predictor: Heads = False,
    encoder: str | None = None,
) -> list[tuple[str, nn.Module]]:
    """Weight layers of the encoder (see ``find_encoder``), plus the chosen heads' layers, by full name."""
    prefix, enc, leave_out = find_encoder(model, encoder)
    layers = [
        (n, m)
        for n, m in _module_weight_layers(enc, prefix)
        if not any(n.split(".")[0] == h for h in leave_out)
    ]
    for name in _head_children(model, include_projector, PROJECTOR_NAMES):
        layers += _module_weight_layers(getattr(model, name), name)
    children = dict(model.named_children())
    predictor = getattr(children.get("objective"), "predictor", None)
    if include_predictor and isinstance(predictor, nn.Module):
        layers += _module_weight_layers(predictor, "objective.predictor")
    elif include_predictor is True and "objective" in children:
        layers += _module_weight_layers(children["objective"], "objective")
    for name in _head_children(model, include_predictor, PREDICTOR_NAMES):
        layers += _module_weight_layers(getattr(model, name), name)
    return layers


def select_weight_layers(
    model: nn.Module,
    layers: str | Sequence[str] | None = None,
    include_projector: Heads = False,
    include_predictor: Heads = False,
    encoder: str | None = None,
) -> list[tuple[str, torch.Tensor]]:
    """(name, weight) of the layers whose name matches any pattern (fnmatch, or regex after ``re:``).

    Default (``layers=None``): every conv and linear weight of the encoder (plus projector / predictor
    heads when asked: True for the usual names, or head names / patterns). Backbone layers match with or
    without the ``backbone.`` prefix. A pattern that matches no encoder layer is looked up in every
    weight layer of the model, so ``'projection_head.*'`` names a head whatever it is called.
    """
    candidates = candidate_layers(model, include_projector, include_predictor, encoder)
    weights = [(name, w) for name, m in candidates if (w := layer_weight(m)) is not None]
    everything = [(n, w) for n, m in _module_weight_layers(model, "") if (w := layer_weight(m)) is not None]
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
        hits = [(n, w) for n, w in weights if name_matches(n, pattern)]
        if not hits:
            hits = [(n, w) for n, w in everything if name_matches(n, pattern)]
        if not hits:
            names = ", ".join(n for n, _ in everything)
            raise ConfigError(
                f"layer pattern '{pattern}' matches no weight layer. Layer names: {names}. "
                f"Use {PATTERN_HELP}."
            )
        chosen += [(n, w) for n, w in hits if all(n != c for c, _ in chosen)]
    order = {n: i for i, (n, _) in enumerate([*weights, *everything])}
    return sorted(chosen, key=lambda item: order[item[0]])


def last_weight_layer(
    model: nn.Module, name: str | None = None, encoder: str | None = None
) -> tuple[str, torch.Tensor]:
    """The encoder's last weight layer (its ``last_layer_name``, else the last one), or the layer ``name``.

    The encoder is found by ``find_encoder`` (never a projector or other head); ``name`` may be a layer of
    the encoder (with or without its prefix) or any weight layer of the model.
    """
    prefix, enc, leave_out = find_encoder(model, encoder)
    dot = f"{prefix}." if prefix else ""
    weights = [
        (n, w)
        for n, m in _module_weight_layers(enc, prefix)
        if (w := layer_weight(m)) is not None and n.split(".")[0] not in leave_out
    ]
    if not weights:
        raise ConfigError(
            f"the encoder of {type(model).__name__} has no weight layers (conv / linear). "
            "Name the encoder (encoder=...) or the layer (layer=...)."
        )
    if name is None:
        own = getattr(enc, "last_layer_name", None)
        if own is None:
            return weights[-1]
        name = dot + own
    everything = [(n, w) for n, m in _module_weight_layers(model, "") if (w := layer_weight(m)) is not None]
    for layer_name, w in [*weights, *everything]:
        if name in (layer_name, dot + layer_name) or dot + name == layer_name:
            return layer_name, w
    listing = ", ".join(n for n, _ in everything)
    raise ConfigError(f"last layer '{name}' is not a weight layer of the model. Layer names: {listing}.")
