"""Bring your own model: collapse metrics, a Lightning monitor, a plain-loop tracker and model loading.

- :class:`~dimcollapse.track.metrics.CollapseMetrics`: torchmetrics Metric (update / compute / reset, DDP);
- :class:`~dimcollapse.track.monitor.CollapseMonitor`: Lightning callback for any LightningModule;
- :class:`~dimcollapse.track.tracker.Tracker`: the same records for a plain training loop;
- :mod:`~dimcollapse.analysis.model_loading`: models from Lightning checkpoints, state_dicts, TorchScript.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "CollapseMetrics": "dimcollapse.track.metrics",
    "CollapseMonitor": "dimcollapse.track.monitor",
    "Tracker": "dimcollapse.track.tracker",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dimcollapse.track' has no attribute '{name}'")


__all__ = sorted(_EXPORTS)
