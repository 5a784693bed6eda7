"""Which hidden layers ``analyze --model --layers`` measures: weight layers, and a transformer's blocks.

``--layers`` takes weight-layer names or patterns (``track/layers.py``: their weight spectra and the
features they output); besides those:

- ``blocks``: the residual stream after every block of the model's block stack (timm's ``blocks.0``
  ..., Hugging Face's ``encoder.layer.0`` ...: the longest ``ModuleList`` / ``Sequential`` whose
  members are all of one class);
- the exact name of a module that holds no weight matrix of its own (``blocks.3``,
  ``encoder.layer.3``, ``layer4``): its output's features, without weight statistics.

``split_layers(module, patterns)`` returns the weight patterns (None: every weight layer) and the
feature-only module names, in the model's order.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from dimcollapse.diagnostics.weights import named_weight_matrices
from dimcollapse.errors import ConfigError

BLOCKS = "blocks"


def block_names(module: nn.Module) -> list[str]:
    """The members of the longest ModuleList / Sequential of one class (two or more), by name."""
    best: list[str] = []
    for name, m in module.named_modules():
        if not isinstance(m, (nn.ModuleList, nn.Sequential)) or len(m) < 2:
            continue
        kinds = {type(c) for c in m}
        if len(kinds) == 1 and len(m) > len(best):
            best = [f"{name}.{i}" if name else str(i) for i in range(len(m))]
    return best


def split_layers(module: nn.Module, patterns: Sequence[str] | None) -> tuple[list[str] | None, list[str]]:
    """(weight patterns or None for every weight layer, feature-only module names); see the docstring."""
    if patterns is None:
        return None, []
    modules = dict(module.named_modules())
    weights = set(named_weight_matrices(module))
    extra: list[str] = []
    rest: list[str] = []
    for p in patterns:
        if p == BLOCKS and BLOCKS not in weights:
            found = block_names(module)
            if not found:
                raise ConfigError(
                    "--layers blocks: the model has no stack of blocks (a ModuleList / Sequential of "
                    "one layer class); name the layers or patterns instead."
                )
            extra += found
        elif p in modules and p not in weights and p:
            extra.append(p)
        else:
            rest.append(p)
    order = {n: i for i, n in enumerate(modules)}
    extra = sorted(dict.fromkeys(extra), key=lambda n: order[n])
    return (rest if rest or not extra else []), extra


__all__ = ["BLOCKS", "block_names", "split_layers"]
