"""What a run actually trained, for metrics.json: planned and trained steps/epochs, why it stopped, and
its scale (processes, nodes, gradient accumulation, global batch).

Results of runs that stopped at different steps do not compare; the study table, the report and the
claims read these keys (``steps``, ``epochs``, ``planned_steps``, ``stopped_early``, ``stop_reason``).
"""

from __future__ import annotations

from typing import Any

from dimcollapse.regularizers.coefficients import effective_weight
from dimcollapse.training.config import RunConfig
from dimcollapse.training.parts import step_name
from dimcollapse.training.plan import RunPlan
from dimcollapse.training.trainer_settings import TrainerSettings

COMPLETED = "completed"
TIME_CAP = "time cap"
NON_FINITE = "non-finite loss"
INTERRUPTED = "interrupted"
STOPPED = "stopped early"


def stop_reason(trainer: Any, steps: int, planned_steps: int) -> str:
    """'completed' when ``steps >= planned_steps``; 'time cap' when Lightning's Timer ran out; else
    'stopped early' (a callback or signal set ``trainer.should_stop``)."""
    if steps >= planned_steps:
        return COMPLETED
    from lightning.pytorch.callbacks import Timer

    for cb in getattr(trainer, "callbacks", []) or []:
        if isinstance(cb, Timer):
            remaining = cb.time_remaining()
            if remaining is not None and remaining <= 0:
                return TIME_CAP
    status = str(getattr(getattr(trainer, "state", None), "status", "")).lower()
    return INTERRUPTED if "interrupted" in status else STOPPED


def training_record(trainer: Any, steps: int, settings: TrainerSettings) -> dict[str, Any]:
    """metrics.json keys: steps and epochs trained and planned (``settings.total_steps``),
    ``stopped_early`` and ``stop_reason`` (the time cap named with its ``optim.max_time_minutes``)."""
    planned_steps, max_time_minutes = settings.total_steps, settings.max_time_minutes
    reason = stop_reason(trainer, steps, planned_steps)
    per_epoch = max(1, int(settings.steps_per_epoch))
    record: dict[str, Any] = {
        "steps": int(steps),
        "epochs": steps / per_epoch,
        "planned_steps": int(planned_steps),
        "planned_epochs": planned_steps / per_epoch,
        "stopped_early": reason != COMPLETED,
        "stop_reason": reason,
    }
    if reason == TIME_CAP:
        record["stop_reason"] = f"{TIME_CAP} (optim.max_time_minutes={max_time_minutes:g})"
    return record


def components_used(cfg: RunConfig) -> dict[str, Any]:
    """The run record's ``components``: objective, training step (name and keywords), backbone, projector
    and each regularizer with the coefficient it trained with (the config's weight or the class default:
    ``so`` -> 0.0001)."""
    return {
        "objective": cfg.objective.name,
        "step": {"name": step_name(cfg), "kwargs": dict(cfg.step.kwargs)},
        "backbone": cfg.model.backbone,
        "projector": cfg.model.projector,
        "regularizers": [
            {"name": r.name, "weight": effective_weight(r.name, r.kwargs)} for r in cfg.regularizers
        ],
    }


def scale_record(plan: RunPlan) -> dict[str, int]:
    """metrics.json keys: world_size, num_nodes, accumulate_grad_batches, global_batch_size."""
    return {
        "world_size": int(plan.world_size),
        "num_nodes": plan.trainer.num_nodes,
        "accumulate_grad_batches": plan.trainer.accumulate_grad_batches,
        "global_batch_size": plan.global_batch_size,
    }
