"""The run plan: the one step from a validated RunConfig to the built parts of a run.

    plan = plan_run(cfg)                   # data set up, components built, settings resolved
    module = SSLModule.from_plan(plan)     # the training module of those parts

Each stage then receives only what it needs: the datamodule its ``DataSettings``, the module its built
components and ``ModuleSettings`` (``ModelParts``), evaluation its ``EvalSettings``, the trainer and the
monitor their blocks. A checkpoint keeps the config and the data facts (``ModelParts.record``), from which
``training/parts.py:module_from_record`` rebuilds the parts (the way back used by ``load_run``).
"""

from __future__ import annotations

from dataclasses import dataclass

from dimcollapse.training.config import MonitorConfig, RunConfig
from dimcollapse.training.datamodule import DataSettings, SSLDataModule, planned_world_size
from dimcollapse.training.device_defaults import choose_kernels, describe_device
from dimcollapse.training.evaluate_run import EvalSettings
from dimcollapse.training.module import ModelParts
from dimcollapse.training.parts import build_parts
from dimcollapse.training.preflight import check_eval_sizes
from dimcollapse.training.trainer_settings import TrainerSettings
from dimcollapse.utils.seeding import seed_everything


@dataclass(frozen=True)
class RunPlan:
    """Everything a training run is made of, built from one validated config by ``plan_run``; the one
    carrier from the config to the trainer, the callbacks and the final metrics (``training/run.py``)."""

    config: RunConfig  # the run's config.yaml and components record (the checkpoint's is ``parts.record``)
    world_size: int  # processes: the global batch (metrics.json, images_per_s)
    data: DataSettings  # what the datamodule was built from (per-process batch of the global batch)
    datamodule: SSLDataModule  # set up: data loaded, probe batch split off, ``info`` known
    parts: ModelParts  # backbone, projector, objective, step, views, pure regularizers, settings
    evaluation: EvalSettings  # the final evaluation and the online probe callback
    trainer: TrainerSettings  # the Trainer (build_trainer), checkpoint cadence, progress bar, seed, time cap
    monitor: MonitorConfig  # the collapse monitor callback

    @property
    def global_batch_size(self) -> int:
        """Images per optimizer step: data.batch_size x processes x gradient accumulation."""
        return self.data.batch_size * self.world_size * self.trainer.accumulate_grad_batches


def plan_run(cfg: RunConfig, world_size: int | None = None) -> RunPlan:
    """The run plan of ``cfg``: seed, set up the data (``world_size`` processes; default: what the trainer
    block asks for), check the evaluation sizes, build the components, resolve every stage's settings."""
    world = planned_world_size(cfg) if world_size is None else int(world_size)
    seed_everything(cfg.trainer.seed)
    data = DataSettings.from_config(cfg)
    dm = SSLDataModule(data, world_size=world)
    dm.setup("fit")
    n_train, n_test = (int(rows.numel()) for rows in dm.eval_indices())
    check_eval_sizes(cfg, n_train, n_test)
    device = describe_device(str(cfg.trainer.accelerator))
    kernels = choose_kernels(cfg.trainer, device)  # the device's defaults and the trainer.* overrides
    parts = build_parts(cfg, dm.info, kernels)
    dm.use_loader_crops(parts.views.crop_plan())  # datasets that crop the full image in the loader
    evaluation = EvalSettings.from_config(cfg)
    trainer = TrainerSettings.from_config(
        cfg, parts.settings.total_steps, dm.info.steps_per_epoch, device=device, kernels=kernels
    )
    return RunPlan(cfg, world, data, dm, parts, evaluation, trainer, cfg.monitor)
