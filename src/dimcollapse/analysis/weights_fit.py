"""Fitting a file's weights to a model: common prefixes stripped, a missing or extra head named, not fatal.

``load_weights(model, state, source)`` tries the state_dict as is and with a common leading prefix
removed (``module.`` of DDP, ``model.backbone.`` ...), and loads the candidate that fits best:
- every key of the model present with its shape: loaded; keys of the file the model lacks (an extra
  head, a momentum copy) are dropped and named (``ignored_keys``);
- only the model's classifier head missing from the file (a backbone saved with ``fc = Identity``): the
  rest is loaded, the head keeps its initial weights and is named (``missing_keys``) — its input, the
  penultimate features, is what ``analyze`` measures then;
- anything else missing, or a shape that differs: a ConfigError naming the keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from dimcollapse.analysis.head import head_candidate
from dimcollapse.errors import ConfigError


def _candidates(state: Mapping[str, Any], expected: set[str]) -> list[dict[str, Any]]:
    """The state_dict as is, then with a common leading prefix ('module.', 'model.backbone.', ...) removed."""
    out = [dict(state)]
    keys = list(state)
    parts = keys[0].split(".") if keys else []
    for depth in range(1, len(parts)):
        prefix = ".".join(parts[:depth]) + "."
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if sub and set(sub) & expected:
            out.append(sub)
    return out


def _shape_ok(cand: Mapping[str, Any], expected: Mapping[str, Any], key: str) -> bool:
    v = cand[key]
    return not isinstance(v, torch.Tensor) or v.shape == expected[key].shape


def _listing(keys: list[str], limit: int = 5) -> str:
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_weights(model: nn.Module, state: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Load ``state`` into ``model`` (see the module docstring); returns the ignored and missing keys."""
    expected = model.state_dict()
    head = head_candidate(model)
    head_keys = {k for k in expected if head is not None and k.startswith(head + ".")}
    best: dict[str, Any] | None = None
    for cand in _candidates(state, set(expected)):
        present = [k for k in expected if k in cand]
        missing = set(expected) - set(cand)
        if all(_shape_ok(cand, expected, k) for k in present) and (not missing or missing <= head_keys):
            if missing == set(head_keys) and not present:
                continue
            model.load_state_dict({k: cand[k] for k in present}, strict=False)
            return {"ignored_keys": sorted(set(cand) - set(expected)), "missing_keys": sorted(missing)}
        if best is None or len(set(cand) & set(expected)) > len(set(best) & set(expected)):
            best = cand
    assert best is not None
    missing_l = sorted(set(expected) - set(best))
    shapes = sorted(
        f"{k} {tuple(best[k].shape)} vs {tuple(expected[k].shape)}"
        for k in set(expected) & set(best)
        if not _shape_ok(best, expected, k)
    )
    detail = (
        f"missing {_listing(missing_l)}"
        if missing_l
        else f"shape mismatches (file vs model): {_listing(shapes)}"
    )
    raise ConfigError(
        f"the weights in '{source}' do not fit the architecture ({detail}; the file has e.g. "
        f"{', '.join(list(state)[:3])}). Pass the --arch and --arch-kwargs the model was trained with."
    )


__all__ = ["load_weights"]
