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

    def _restore(self, device: torch.device) -> None:
        self.head.to(device)
        if self._pending is not None:
            self.head.load_state_dict(self._pending["head"])
            self.opt.load_state_dict(self._pending["opt"])
            self._pending = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int
    ) -> None:
        """One probe step on (r, y) of the batch; logs the running training accuracy of the probe."""
        r, y = getattr(pl_module, "last_r", None), getattr(pl_module, "last_y", None)
        if r is None or y is None:
            return
        self._restore(r.device)
        keep = y >= 0
        if not bool(keep.any()):
            return
        with torch.enable_grad():
            logits = self.head(r[keep].float())
            loss = F.cross_entropy(logits, y[keep])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        acc = float((logits.argmax(1) == y[keep]).float().mean())
        pl_module.log_dict(
            {"train/online_probe_loss": float(loss.detach()), "train/online_probe_acc": acc},
            on_step=True,
            batch_size=int(keep.sum()),
        )

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
