"""The coefficient a regularizer trains with, as used: the config's ``weight`` or the class's default.

``so`` with no weight and ``so`` with ``weight: 0.0001`` train with the same coefficient and must be
recorded the same (``so=0.0001``): the run record and the study table write :func:`effective_weight`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dimcollapse.errors import ConfigError
from dimcollapse.registry import get


def effective_weight(name: str, kwargs: Mapping[str, Any] | None = None) -> float | None:
    """kwargs['weight'] when given, else the registered class's ``default_weight`` (the rule the training
    schedules apply, ``training/schedules.py:coefficient_schedule``); None when it has neither."""
    given = (kwargs or {}).get("weight")
    if given is not None:
        return float(given)
    default = getattr(get("regularizer", name), "default_weight", None)
    return None if default is None else float(default)


def weight_text(name: str, kwargs: Mapping[str, Any] | None = None) -> str:
    """``name=<effective weight>`` (the float's repr, e.g. ``so=0.0001``; ``name=default`` when unknown)."""
    try:
        w = effective_weight(name, kwargs)
    except (ConfigError, ValueError, TypeError):  # an unknown name or a weight that is no number
        w = None
    return f"{name}={'default' if w is None else w!r}"
