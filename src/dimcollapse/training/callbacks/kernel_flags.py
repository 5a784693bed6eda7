"""The run's kernel flags (cudnn.benchmark, TF32) set in every training process for the fit, then restored.

The flags are process-global, so they are set in ``setup`` (which runs in each process, spawned ones
included) and put back in ``teardown``: the final evaluation and a caller's own code after ``train`` see
their previous values. Only a CUDA run sets anything (``training/device_defaults.py``).
"""

from __future__ import annotations

from typing import Any

import lightning as L

from dimcollapse.training.device_defaults import (
    DeviceInfo,
    KernelChoices,
    apply_kernel_flags,
    restore_kernel_flags,
)


class KernelFlags(L.Callback):
    """Sets the kernel flags of ``kernels`` on ``device`` for the fit and restores the previous ones."""

    def __init__(self, kernels: KernelChoices, device: DeviceInfo) -> None:
        self.kernels, self.device = kernels, device
        self._previous: dict[str, object] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Set the flags in this process."""
        self._previous = apply_kernel_flags(self.kernels, self.device)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Put the previous flags back."""
        restore_kernel_flags(self._previous)
        self._previous = None

    def state_dict(self) -> dict[str, Any]:
        """Nothing to checkpoint (the flags follow the config)."""
        return {}
