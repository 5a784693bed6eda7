"""dimcollapse: measure, explain and prevent dimensional collapse in self-supervised learning.

Layers (an arrow points to what a layer may import; the exact table is docs/architecture.md, enforced
by tests/test_architecture.py)::

    cli -> analysis -> report -> study -> training -> objectives, regularizers -> models, data
    report -> theory -> diagnostics;  training -> track -> diagnostics
    errors, registry, utils, contracts <- everyone
"""

from typing import Any

from dimcollapse.errors import ConfigError, DimCollapseError, InputError

__version__ = "0.1.0"

_TRACK = ("CollapseMetrics", "CollapseMonitor", "Tracker")


def __getattr__(name: str) -> Any:
    """Lazy exports: ``from dimcollapse import CollapseMetrics`` imports torch/lightning only then."""
    if name in _TRACK:
        import dimcollapse.track as track

        return getattr(track, name)
    raise AttributeError(f"module 'dimcollapse' has no attribute '{name}'")


__all__ = ["CollapseMetrics", "CollapseMonitor", "ConfigError", "DimCollapseError", "InputError", "Tracker",
           "__version__"]  # fmt: skip
