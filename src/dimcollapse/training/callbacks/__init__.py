"""Training callbacks: the collapse monitor, the online linear probe, signals, the lr override, the
kernel flags."""

from dimcollapse.training.callbacks.collapse_monitor import CollapseMonitor
from dimcollapse.training.callbacks.graceful_stop import GracefulStop
from dimcollapse.training.callbacks.kernel_flags import KernelFlags
from dimcollapse.training.callbacks.lr_override import LrOverride
from dimcollapse.training.callbacks.online_probe import OnlineProbe

__all__ = ["CollapseMonitor", "GracefulStop", "KernelFlags", "LrOverride", "OnlineProbe"]
