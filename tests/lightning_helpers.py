"""Helper of the training tests: a Lightning trainer without logger, checkpoints, progress bar, validation."""

from __future__ import annotations

import lightning as L


def quiet_trainer(steps: int, callbacks: list[L.Callback] | None = None) -> L.Trainer:
    """A trainer that only fits ``steps`` steps (no logging, checkpoints, summary, sampler or validation)."""
    return L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        limit_val_batches=0,
        callbacks=callbacks or [],
    )
