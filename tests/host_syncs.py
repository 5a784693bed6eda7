"""Helper of the tests: count the host syncs of each training step (the ways a tensor's value reaches Python).

A device tensor's value reaches the host through ``item``, ``tolist``, ``cpu``, ``numpy`` and the Python
conversions ``__bool__`` / ``__float__`` / ``__int__`` / ``__index__``; ``HostSyncCounter`` patches them for
the duration of each training batch (forward, backward, optimizer step, every callback's batch hooks) and
records, per global step, how many were called and from where.
"""

from __future__ import annotations

import traceback
from typing import Any

import lightning as L
import torch

PATCHED = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


class HostSyncCounter(L.Callback):
    """Counts patched calls between ``on_train_batch_start`` and the end of the batch; ``per_step[s]``."""

    def __init__(self) -> None:
        self.per_step: dict[int, list[str]] = {}
        self._saved: dict[str, Any] = {}
        self._step: int | None = None

    def _patch(self) -> None:
        for name in PATCHED:
            original = getattr(torch.Tensor, name)
            self._saved[name] = original

            def counted(t: torch.Tensor, *a: Any, _name: str = name, _orig: Any = original, **k: Any) -> Any:
                if self._step is not None:
                    where = next(
                        (f for f in reversed(traceback.extract_stack()[:-1]) if "/torch/" not in f.filename),
                        traceback.extract_stack()[-2],
                    )
                    self.per_step.setdefault(self._step, []).append(
                        f"{_name} {where.filename}:{where.lineno}"
                    )
                return _orig(t, *a, **k)

            setattr(torch.Tensor, name, counted)

    def _unpatch(self) -> None:
        for name, original in self._saved.items():
            setattr(torch.Tensor, name, original)
        self._saved = {}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, idx: int) -> None:
        self._step = int(trainer.global_step)
        self.per_step.setdefault(self._step, [])
        self._patch()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int
    ) -> None:
        self._unpatch()
        self._step = None

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._unpatch()
