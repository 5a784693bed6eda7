"""The Lightning training engine: SSL module, callbacks, evaluation, config.

    from dimcollapse.training import load_config, train, evaluate_checkpoint
    metrics = train(load_config("configs/fmnist/simclr_mlp.yaml", ["optim.epochs=2"]), "runs/simclr")
    evaluate_checkpoint("runs/simclr/checkpoints/final.ckpt")

``train`` and ``evaluate_checkpoint`` import Lightning on first use (it is slow to import).
"""

from __future__ import annotations

from typing import Any

from dimcollapse.training.config import RunConfig, load_config, merge_config, to_dict

__all__ = ["RunConfig", "evaluate_checkpoint", "load_config", "merge_config", "to_dict", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from dimcollapse.training.run import train

        return train
    if name == "evaluate_checkpoint":
        from dimcollapse.training.evaluate_run import evaluate_checkpoint

        return evaluate_checkpoint
    raise AttributeError(f"module 'dimcollapse.training' has no attribute {name!r}")
