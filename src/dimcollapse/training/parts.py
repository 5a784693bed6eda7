"""The training module's parts built from a config: the config -> components step of ``plan_run``, and
the way back from a checkpoint's record (config dict + data facts) to the module (``load_run``).

    parts = build_parts(cfg, info)      # backbone, projector, objective, views, regularizers, settings
    module = SSLModule.from_parts(parts)
"""

from __future__ import annotations

from typing import Any, cast

from torch import nn

from dimcollapse import contracts
from dimcollapse.data.views import ViewAugment
from dimcollapse.models.pointwise import set_workaround
from dimcollapse.registry import build, get
from dimcollapse.training.config import RunConfig, from_dict, to_dict
from dimcollapse.training.datamodule import DataInfo
from dimcollapse.training.device_defaults import KernelChoices, default_kernels, describe_device
from dimcollapse.training.model import build_network
from dimcollapse.training.module import ModelParts, ModuleSettings, SSLModule
from dimcollapse.training.schedules import Schedules, build_schedules, split_term_kwargs


def run_schedules(cfg: RunConfig, info: DataInfo) -> Schedules:
    """The schedules of ``cfg`` on data described by ``info`` (total steps: optim.max_steps, else epochs)."""
    spe = int(info.steps_per_epoch)
    total = int(cfg.optim.max_steps or cfg.optim.epochs * spe)
    terms = [get("regularizer", r.name) for r in cfg.regularizers]
    return build_schedules(cfg, spe, total, get("objective", cfg.objective.name), terms)


def module_settings(cfg: RunConfig, info: DataInfo) -> ModuleSettings:
    """The training module's settings of ``cfg`` on data described by ``info``."""
    t = cfg.trainer
    return ModuleSettings(
        optim=cfg.optim,
        schedules=run_schedules(cfg, info),
        batch_size=int(cfg.data.batch_size),
        seed=int(t.seed),
        global_batchnorm=bool(t.sync_batchnorm and t.accelerator == "cpu"),
        objective_name=str(cfg.objective.name),
        log_every=int(t.log_every),
        equal_batches=True,  # the datamodule's StepBatchSampler: exactly batch_size rows per process
    )


def build_parts(cfg: RunConfig, info: DataInfo, kernels: KernelChoices | None = None) -> ModelParts:
    """Backbone, projector, objective, views and regularizers of ``cfg`` on data described by ``info``,
    built in this order (the order fixes the initial weights of a seed). The backbone's memory layout is
    ``kernels.channels_last`` (default: trainer.channels_last, else the accelerator's default); a set
    trainer.strided_1x1_workaround forces the strided 1x1 form (unset: by the device at run time)."""
    size = int(cfg.data.views.image_size or info.image_size)
    settings = module_settings(cfg, info)  # schedules checked before anything is built
    t = cfg.trainer
    if kernels is None:  # a checkpoint's record: no device checks, the layout does not change values
        kernels = default_kernels(describe_device(str(t.accelerator)))
    layout = kernels.channels_last if t.channels_last is None else bool(t.channels_last)
    backbone, projector, objective = build_network(
        cfg.model, cfg.objective, info.channels, size, layout, t.channels_last is not None
    )
    if t.strided_1x1_workaround is not None:
        set_workaround(cast(nn.Module, backbone), bool(t.strided_1x1_workaround))
    v = cfg.data.views
    views = ViewAugment(
        {"name": v.recipe, **dict(v.overrides)},
        image_size=size,
        channels=info.channels,
        n_views=v.n_views,
        dataset=cfg.data.name,
    )
    regs = tuple(
        (r.name, build("regularizer", r.name, **split_term_kwargs(r.kwargs)[1])) for r in cfg.regularizers
    )
    step: contracts.TrainingStep = build("step", step_name(cfg), **cfg.step.kwargs)
    record = {"config": to_dict(cfg), "data_info": dict(info.__dict__)}
    return ModelParts(backbone, projector, objective, views, regs, settings, record, step)


def step_name(cfg: RunConfig) -> str:
    """The run's training step: ``step.name``, else the objective's ``default_step`` ("views")."""
    default: str = getattr(get("objective", cfg.objective.name), "default_step", "views")
    return cfg.step.name or default


def module_from_record(config: dict[str, Any], data_info: dict[str, Any]) -> SSLModule:
    """The training module rebuilt from a checkpoint's record (its config dict and data facts)."""
    return SSLModule.from_parts(build_parts(from_dict(config), DataInfo(**data_info)))
