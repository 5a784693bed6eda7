"""Online linear probe: a linear classifier trained on the detached representation r during SSL training.

Its gradient never reaches the encoder (r is detached); it reports how linearly decodable r is as training
goes (solo-learn's online classifier idea, our own implementation). State is kept in checkpoints.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


class OnlineProbe(L.Callback):
    """softmax(W r + b) trained with SGD (momentum 0.9) on each step's detached r of the first view."""

    def __init__(self, in_dim: int, num_classes: int, lr: float = 0.1) -> None:
        super().__init__()
        self.head = nn.Linear(in_dim, num_classes)
        self.opt = torch.optim.SGD(self.head.parameters(), lr=lr, momentum=0.9)
        self.correct = 0.0
        self.seen = 0.0
        self._pending: dict[str, Any] | None = None
        self.last_batch: tuple[torch.Tensor, torch.Tensor] | None = None  # (r, y) of the last step seen

    def _restore(self, device: torch.device) -> None:
        self.head.to(device)
        if self._pending is not None:
            self.head.load_state_dict(self._pending["head"])
            self.opt.load_state_dict(self._pending["opt"])
            self._pending = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int
    ) -> None:
        """One probe step on the step's outputs (r, y); logs the probe's training accuracy (tensors).

        Rows with a negative label (unlabelled) weigh 0, so the step needs no host sync."""
        if not isinstance(outputs, dict) or outputs.get("r") is None or outputs.get("y") is None:
            return
        r, y = outputs["r"], outputs["y"]
        self.last_batch = (r, y)
        self._restore(r.device)
        keep = (y >= 0).to(r.dtype)
        n = keep.sum()
        with torch.enable_grad():
            logits = self.head(r.float())
            per_row = F.cross_entropy(logits, y.clamp_min(0), reduction="none")
            loss = (per_row * keep).sum() / n.clamp_min(1.0)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        acc = ((logits.argmax(1) == y).to(r.dtype) * keep).sum() / n.clamp_min(1.0)
        pl_module.log_dict(
            {"train/online_probe_loss": loss.detach(), "train/online_probe_acc": acc.detach()},
            on_step=True,
            batch_size=r.shape[0],
        )

    def last_batch_accuracy(self) -> float | None:
        """Top-1 accuracy of the probe on the last training batch it saw (None: none seen)."""
        if self.last_batch is None:
            return None
        return self.accuracy(*self.last_batch)

    @torch.no_grad()
    def accuracy(self, r: torch.Tensor, y: torch.Tensor) -> float:
        """Top-1 accuracy of the probe on (r, y) as a fraction."""
        self._restore(r.device)
        return float((self.head(r.float()).argmax(1) == y).float().mean())

    def state_dict(self) -> dict[str, Any]:
        """Probe weights and optimizer state."""
        return {"head": self.head.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore on first use (the device is known then)."""
        self._pending = state_dict
