"""``--resume --override-lr``: continue a run with a new base learning rate.

The optimizer and the warm-up + cosine schedule come back from the checkpoint with the old base lr;
this callback scales the schedule's base lrs and the groups' current lrs by new / old once the state
is restored (``on_train_start``), so the rest of the schedule has the same shape at the new scale.
"""

from __future__ import annotations

from typing import Any

import lightning as L


class LrOverride(L.Callback):
    """Multiply every scheduler base lr and optimizer group lr by ``new_lr / old_lr`` after the restore."""

    def __init__(self, old_lr: float, new_lr: float) -> None:
        self.old_lr, self.new_lr = float(old_lr), float(new_lr)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """lr <- lr * new/old for every group; base_lrs likewise (LambdaLR: lr = base_lr * lambda(step))."""
        ratio = self.new_lr / self.old_lr
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["lr"] * ratio
                if "initial_lr" in group:
                    group["initial_lr"] = group["initial_lr"] * ratio
        for config in trainer.lr_scheduler_configs:
            sched: Any = config.scheduler
            sched.base_lrs = [b * ratio for b in sched.base_lrs]
            if hasattr(sched, "_last_lr"):
                sched._last_lr = [group["lr"] for group in sched.optimizer.param_groups]
