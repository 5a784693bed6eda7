"""The run's loggers by name: ``trainer.loggers: [csv, tensorboard, wandb, mlflow]`` (Lightning's loggers).

- ``csv``: ``<out>/logs/version_*/metrics.csv``; ``tensorboard``: ``<out>/tb`` (event files);
- ``wandb``: Weights & Biases, project ``dimcollapse``, run name = the run's name, files under ``<out>``;
  its usual environment applies (``WANDB_MODE=offline`` keeps the run on disk, ``WANDB_PROJECT``);
- ``mlflow``: MLflow, experiment ``dimcollapse``, tracking URI ``MLFLOW_TRACKING_URI`` or a local file
  store ``file:<out>/mlruns``.

Every logger receives the step's scalars and the monitor's (``monitor/<key>``); the monitor's spectra go
to TensorBoard and W&B as histograms and to MLflow as one JSON artifact per measurement
(``track/monitor.py``). W&B and MLflow are optional: ``pip install dimcollapse[loggers]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from dimcollapse.errors import ConfigError


def _csv(out: Path, name: str) -> Logger:
    return CSVLogger(save_dir=str(out), name="logs")


def _tensorboard(out: Path, name: str) -> Logger:
    return TensorBoardLogger(save_dir=str(out), name="tb", default_hp_metric=False)


def _wandb(out: Path, name: str) -> Logger:
    from lightning.pytorch.loggers import WandbLogger

    project = os.environ.get("WANDB_PROJECT", "dimcollapse")
    return WandbLogger(name=name, project=project, save_dir=str(out))


def _mlflow(out: Path, name: str) -> Logger:
    from lightning.pytorch.loggers import MLFlowLogger

    uri = os.environ.get("MLFLOW_TRACKING_URI") or (out / "mlruns").resolve().as_uri()
    if uri.startswith("file:"):  # MLflow 3 refuses its file store unless asked: a local run asks
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(experiment_name="dimcollapse", run_name=name, tracking_uri=uri)


LOGGERS: dict[str, Callable[[Path, str], Logger]] = {
    "csv": _csv,
    "tensorboard": _tensorboard,
    "wandb": _wandb,
    "mlflow": _mlflow,
}
_PACKAGE = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow-skinny"}


def check_logger_names(names: Sequence[str]) -> list[str]:
    """The names, refused in one line when one is unknown or repeated."""
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise ConfigError(f"unknown logger(s) {unknown} in trainer.loggers; valid: {', '.join(LOGGERS)}.")
    if len(set(names)) != len(names):
        raise ConfigError(f"trainer.loggers names a logger twice: {list(names)}.")
    return list(names)


def build_loggers(names: Sequence[str], out: Path, run_name: str) -> list[Logger]:
    """One Lightning logger per name; a missing optional package is a one-line ConfigError."""
    loggers = []
    for name in check_logger_names(names):
        try:
            loggers.append(LOGGERS[name](out, run_name))
        except ModuleNotFoundError as e:
            if name == "tensorboard":  # the default's second logger: CSV alone still records the run
                logging.getLogger("dimcollapse").warning("tensorboard is not installed; not logging to it")
                continue
            raise ConfigError(
                f"trainer.loggers names '{name}' but its package is not installed ({e.name}); "
                f"pip install {_PACKAGE.get(name, name)} (or pip install 'dimcollapse[loggers]'), "
                "or leave it out of trainer.loggers."
            ) from None
    return loggers


__all__ = ["LOGGERS", "build_loggers", "check_logger_names"]
