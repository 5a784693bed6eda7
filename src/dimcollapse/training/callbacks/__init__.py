"""Training callbacks: the collapse monitor and the online linear probe."""

from dimcollapse.training.callbacks.collapse_monitor import CollapseMonitor
from dimcollapse.training.callbacks.online_probe import OnlineProbe

__all__ = ["CollapseMonitor", "OnlineProbe"]
