"""The LightningModule: views -> training step (backbone, projector, objective) + regularizers -> optimizer.

The step's shape is a registered ``step`` (``training/steps/``: ``views`` encodes every view, then the
loss; ``masked`` masks the online views first); it returns L_ssl and the representations.

L = L_ssl + sum_j c_j(step) * term_j (SPEC section 4): the terms are pure modules, the coefficients c_j and
every other scheduled value come from the run's schedules (``training/schedules.py``) as values. Every term
is logged on its own with its share term_j / L. Losses, statistics and the non-finite check stay tensors:
the step makes no host sync outside logging steps (the non-finite flag is read at logging steps, before
every checkpoint and at the end).
Randomness of step s (views, random sub-vector masks, dropout) comes from a seed derived from (seed, s,
rank), so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, cast

import lightning as L
import torch
from torch import Tensor, nn

from dimcollapse import contracts
from dimcollapse.data.views import ViewAugment
from dimcollapse.errors import ConfigError, DivergedError, InputError
from dimcollapse.training.config import OptimConfig
from dimcollapse.training.ema import EMAHook
from dimcollapse.training.model import SSLModel, as_module
from dimcollapse.training.nonfinite import NonFiniteFlag
from dimcollapse.training.optim import build_optimizer
from dimcollapse.training.schedules import Schedules, StepValues
from dimcollapse.training.steps import ViewsStep
from dimcollapse.utils.batchnorm import convert_to_global_batchnorm
from dimcollapse.utils.distributed import equal_batches


class NonFiniteLossError(DivergedError):
    """The loss became NaN or Inf during training."""


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """Seed of global step ``step`` on process ``rank``: a fixed mix of (seed, step, rank)."""
    return (int(seed) * 1_000_003 + int(step) * 104_729 + int(rank) * 7_919 + 1) % (2**62)


def term_names(names: list[str]) -> list[str]:
    """Unique log names for the regularizers: 'so', 'so_2', ... when a name repeats."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out


class StepOutput(TypedDict):
    """What ``training_step`` returns: the loss (Lightning backpropagates it) and, for the callbacks that
    read ``outputs`` in ``on_train_batch_end``, r of the first view (detached), the labels and each
    regularizer's statistics (detached tensors)."""

    loss: Tensor
    r: Tensor
    y: Tensor
    terms: dict[str, dict[str, Tensor]]


@dataclass(frozen=True)
class ModuleSettings:
    """The plain settings the training module needs (no config object).

    ``schedules`` gives every scheduled value at a step (lr, coefficients, EMA momentum, the objective's
    scheduled keywords); ``global_batchnorm`` swaps BatchNorm for the all-reducing GlobalBatchNorm (CPU
    multi-process runs); ``objective_name`` names the loss in error messages; ``log_every`` is the logging
    cadence (the steps at which values reach the host); ``equal_batches``: every process's micro-batch holds
    exactly ``batch_size`` rows (the run's step sampler), so the losses know the global batch without
    gathering the sizes (``utils/distributed.py:equal_batches``).
    """

    optim: OptimConfig
    schedules: Schedules
    batch_size: int
    seed: int = 0
    global_batchnorm: bool = False
    objective_name: str = "objective"
    log_every: int = 1
    equal_batches: bool = False

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch."""
        return self.schedules.steps_per_epoch

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run: optim.max_steps, else epochs x steps per epoch."""
        return self.schedules.total_steps


@dataclass(frozen=True)
class ModelParts:
    """The built components of a training module and its settings (``training/parts.py:build_parts``).

    One set of parts builds one module (the module takes these very objects, no copies)."""

    backbone: contracts.Backbone
    projector: contracts.Projector
    objective: contracts.Objective
    views: ViewAugment
    regularizers: tuple[tuple[str, contracts.Regularizer], ...]  # (registry name, pure regularizer term)
    settings: ModuleSettings
    record: dict[str, Any] | None = None  # {"config", "data_info"}: what a checkpoint stores to rebuild
    step: contracts.TrainingStep = field(default_factory=ViewsStep)  # the step's shape (training/steps/)


class Planned(Protocol):
    """Anything that carries built model parts (``training/plan.py:RunPlan``)."""

    @property
    def parts(self) -> ModelParts:
        """The built components and settings of the training module."""
        ...


class SSLModule(L.LightningModule):
    """Composes SSLModel + ViewAugment + regularizers; logs each loss term; EMA target; NaN guard.

    Built from components and plain settings: ``SSLModule(backbone, projector, objective, views, settings,
    regularizers)`` with ``regularizers`` as (name, module) pairs; a run builds it with
    ``SSLModule.from_plan(plan_run(cfg))``. ``record`` (the run's config dict and data facts) is stored as
    the checkpoint's hyper-parameters, so ``load_run`` can rebuild the parts from it; a module without a
    record trains and saves, but ``load_run`` cannot reload it.
    """

    def __init__(
        self,
        backbone: contracts.Backbone,
        projector: contracts.Projector,
        objective: contracts.Objective,
        views: ViewAugment,
        settings: ModuleSettings,
        regularizers: Sequence[tuple[str, contracts.Regularizer]] = (),
        record: Mapping[str, Any] | None = None,
        step: contracts.TrainingStep | None = None,
    ) -> None:
        super().__init__()
        if record is not None:
            self.save_hyperparameters(dict(record))
        self.settings = settings
        self.model = SSLModel(backbone, projector, objective)
        if settings.global_batchnorm:
            # torch's SyncBatchNorm is CUDA-only; ours all-reduces batch statistics with any backend
            self.model = convert_to_global_batchnorm(self.model)
        self.views = views
        self.step = step if step is not None else ViewsStep()  # the step's shape: views -> loss by default
        self.step.check(self.model, self.views.n_views, self.views.n_local)
        self.regularizers = nn.ModuleList(
            [as_module(reg, f"regularizer {name}") for name, reg in regularizers]
        )
        self.terms: list[contracts.Regularizer] = [reg for _, reg in regularizers]  # the same modules, typed
        self.term_names = term_names([name for name, _ in regularizers])
        n_coef = len(settings.schedules.coefficients)
        if n_coef != len(self.regularizers):
            raise ConfigError(
                f"{len(self.regularizers)} regularizers but {n_coef} coefficient schedules; build the "
                "settings' schedules from the same regularizer entries (training/schedules.py)."
            )
        self.ema = EMAHook(self.model.momentum_pairs())
        self.nonfinite = NonFiniteFlag(len(self.regularizers) + 1)
        self.train_time_s = 0.0  # accumulated over resumed sessions
        self._t_session: float | None = None

    @classmethod
    def from_plan(cls, plan: Planned) -> SSLModule:
        """The module of a run plan (its built parts, settings and checkpoint record)."""
        return cls.from_parts(plan.parts)

    @classmethod
    def from_parts(cls, p: ModelParts) -> SSLModule:
        """The module of built parts (``training/plan.py:build_parts``)."""
        return cls(
            p.backbone, p.projector, p.objective, p.views, p.settings, p.regularizers, p.record, p.step
        )

    @property
    def objective(self) -> contracts.Objective:
        """The objective, typed by its contract (``dimcollapse.contracts.Objective``)."""
        return self.model.objective

    @property
    def input_size(self) -> int:
        """Side of the (global) views fed to the backbone."""
        return int(self.views.image_size)

    # -- schedule -------------------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run: optim.max_steps, else epochs x steps per epoch."""
        return self.settings.total_steps

    def progress(self) -> float:
        """Fraction of the run done, in [0, 1]."""
        return self.settings.schedules.progress(int(self.global_step))

    def configure_optimizers(self) -> Any:
        """Optimizer over the online network (biases/norms without decay); lr = optim.lr x the schedules'
        per-step factor (warm-up + cosine)."""
        s = self.settings
        opt = build_optimizer(self.model.online_modules(), s.optim)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, s.schedules.lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    # -- forward --------------------------------------------------------------------------------------
    def encode_eval(self, x_uint8: Tensor) -> tuple[Tensor, Tensor]:
        """(r, z) of un-augmented images (the caller sets eval mode and no_grad)."""
        return self.model.encode(self.views.eval_transform(x_uint8))

    def _terms(self, rs: list[Tensor], tr: list[Tensor] | None, values: StepValues) -> list[Tensor | None]:
        """Each regularizer's raw term (None: its coefficient is 0 and it skips work while off)."""
        raws: list[Tensor | None] = []
        for reg, coef in zip(self.terms, values.coefficients, strict=True):
            if coef == 0.0 and reg.skip_when_off:
                raws.append(None)
            elif reg.target == "weights":
                raws.append(cast(contracts.WeightRegularizer, reg)(self.model))
            else:
                raws.append(cast(contracts.FeatureRegularizer, reg)(rs, tr))
        return raws

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> StepOutput:
        """One SSL step on a uint8 batch: L = L_ssl + sum_j c_j(step) * term_j, with its outputs (the
        loss for the optimizer; r of the first view, labels and per-term statistics for the callbacks).
        L_ssl and the representations come from the run's training step (``self.step``)."""
        if not self.settings.equal_batches:
            return self._step(batch, batch_idx)
        n, want = int(batch[1].shape[0]), int(self.settings.batch_size)  # labels: images may be a crop list
        if n != want:  # every process must take the same path: a short batch would gather sizes alone
            raise InputError(
                f"a training batch holds {n} rows where the run's sampler gives exactly {want} on every "
                "process; feed whole batches (drop the last partial one) or build ModuleSettings with "
                "equal_batches=False."
            )
        with equal_batches():
            return self._step(batch, batch_idx)

    def _step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> StepOutput:
        """The body of ``training_step``."""
        x, y = batch
        step = int(self.global_step)
        values = self.settings.schedules.at(step)
        acc = int(self.trainer.accumulate_grad_batches) if self._trainer is not None else 1
        micro = step * acc + batch_idx % acc  # the micro-batch's own seed (= step without accumulation)
        torch.manual_seed(step_seed(self.settings.seed, micro, self.global_rank))
        out = self.step(contracts.StepBatch(self.views(x), self.views.n_views, y), self.model, values)
        ssl, rs = out.ssl, out.rs
        raws = self._terms(rs, out.target_rs, values)
        terms = [
            ssl.new_zeros(()) if raw is None else raw * c
            for raw, c in zip(raws, values.coefficients, strict=True)
        ]
        total = ssl + torch.stack(terms).sum() if terms else ssl
        self.nonfinite.update(step, [ssl, *terms])
        stats = self._term_stats(total, terms, values)
        if self._is_log_step(step):
            self.check_finite()
            self._log_terms(total, ssl, stats)
        return {"loss": total, "r": rs[0].detach(), "y": y, "terms": stats}

    def _term_stats(
        self, total: Tensor, terms: list[Tensor], values: StepValues
    ) -> dict[str, dict[str, Tensor]]:
        """Per regularizer: value c * term, its share of |L|, the coefficient and the term's own statistics
        (detached tensors, no host sync)."""
        denom = total.detach().abs()
        denom = torch.where(denom == 0, torch.ones_like(denom), denom)
        out: dict[str, dict[str, Tensor]] = {}
        for name, reg, term, coef in zip(
            self.term_names, self.terms, terms, values.coefficients, strict=True
        ):
            value = term.detach()
            stats = {"value": value, "share": value / denom, "coefficient": value.new_tensor(coef)}
            if coef != 0.0 or not reg.skip_when_off:
                stats.update(reg.last_stats)
            out[name] = stats
        return out

    def _is_log_step(self, step: int) -> bool:
        """True on the steps whose values reach the host (every ``log_every``-th step, and the last)."""
        every = max(1, int(self.settings.log_every))
        return (step + 1) % every == 0 or step + 1 >= self.total_steps

    def _log_terms(self, total: Tensor, ssl: Tensor, stats: dict[str, dict[str, Tensor]]) -> None:
        """Log L, L_ssl, each term and its share term / L, the regularizers' and objective's stats, the lr.

        L and L_ssl are logged as the global values (mean over processes)."""
        bs = int(self.settings.batch_size)
        logs: dict[str, Tensor | float] = {}
        for name, term in stats.items():
            for key, v in term.items():
                logs[f"train/reg/{name}" if key == "value" else f"train/reg/{name}_{key}"] = v
        for key, v in self.objective.last_stats.items():
            logs[f"train/objective/{key}"] = v
        if self._trainer is not None and self.trainer.optimizers:
            logs["train/lr"] = float(self.trainer.optimizers[0].param_groups[0]["lr"])
        glob = {"train/loss": total.detach(), "train/ssl_loss": ssl.detach()}
        self.log_dict(glob, on_step=True, on_epoch=False, batch_size=bs, prog_bar=False, sync_dist=True)
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=bs, prog_bar=False)
        self.log("loss", total.detach(), on_step=True, prog_bar=True, logger=False, batch_size=bs)

    def check_finite(self) -> None:
        """Raise NonFiniteLossError if a loss term was NaN/Inf at any step so far (one host read)."""
        bad = self.nonfinite.first_bad()
        if bad is not None:
            step, which = bad
            names = [f"objective {self.settings.objective_name}"] + [
                f"regularizer {n}" for n in self.term_names
            ]
            self._raise_nonfinite(step, [n for n, b in zip(names, which, strict=True) if b])

    def _raise_nonfinite(self, step: int, bad: list[str]) -> None:
        cb = getattr(self._trainer, "checkpoint_callback", None) if self._trainer is not None else None
        last = getattr(cb, "last_model_path", "") if cb is not None else ""
        good = getattr(cb, "last_good_step", None)
        at = f" (step {good})" if good is not None else ""
        ckpt = (
            f" The last good checkpoint{at} is kept at '{last}'."
            if last
            else " No checkpoint was written yet."
        )
        what = ", ".join(bad) or "the sum of terms"
        raise NonFiniteLossError(
            f"the loss became non-finite at step {step} (from {what}); training stopped.{ckpt} Lower "
            "optim.lr, add warm-up (optim.warmup_epochs) or use trainer.precision=32-true.",
            step,
            what,
        )

    # -- hooks ----------------------------------------------------------------------------------------
    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Optimizer step, then the EMA hook moves the momentum pairs with the schedules' m(step)."""
        super().optimizer_step(*args, **kwargs)
        momentum = self.settings.schedules.at(int(self.global_step)).momentum
        if momentum is not None:
            self.ema.step(momentum)

    def on_train_start(self) -> None:
        """Start the session clock."""
        self._t_session = time.perf_counter()

    def session_time(self) -> float:
        """Seconds of training in this session so far."""
        return 0.0 if self._t_session is None else time.perf_counter() - self._t_session

    def on_train_end(self) -> None:
        """Check the non-finite flag a last time; accumulate the session's training time."""
        self.check_finite()
        self.train_time_s += self.session_time()
        self._t_session = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a state reached through a non-finite loss; store the accumulated training time."""
        self.check_finite()
        checkpoint["dimcollapse_train_time_s"] = self.train_time_s + self.session_time()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the accumulated training time."""
        value = checkpoint.get("dimcollapse_train_time_s", 0.0)
        self.train_time_s = float(value) if math.isfinite(float(value)) else 0.0
