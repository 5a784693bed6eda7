"""The LightningModule: views -> backbone -> projector -> objective (+ regularizers) -> optimizer step.

L = L_ssl + sum_j term_j (SPEC section 4). Every term is logged on its own with its share term_j / L.
Randomness of step s (views, random sub-vector masks, dropout) comes from a seed derived from (seed, s,
rank), so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import lightning as L
import torch
from torch import Tensor, nn

from dimcollapse.data.views import ViewAugment
from dimcollapse.errors import ConfigError, DivergedError
from dimcollapse.training.config import OptimConfig
from dimcollapse.training.model import SSLModel
from dimcollapse.training.optim import build_optimizer, build_scheduler
from dimcollapse.utils.batchnorm import convert_to_global_batchnorm


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


@dataclass(frozen=True)
class ModuleSettings:
    """The plain settings the training module needs (no config object).

    ``steps_per_epoch`` converts steps to epochs (regularizer / objective schedules, the lr warm-up);
    ``global_batchnorm`` swaps BatchNorm for the all-reducing GlobalBatchNorm (CPU multi-process runs);
    ``objective_name`` names the loss in error messages.
    """

    optim: OptimConfig
    steps_per_epoch: int
    batch_size: int
    seed: int = 0
    global_batchnorm: bool = False
    objective_name: str = "objective"

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run: optim.max_steps, else epochs x steps per epoch."""
        return int(self.optim.max_steps or self.optim.epochs * self.steps_per_epoch)


@dataclass(frozen=True)
class ModelParts:
    """The built components of a training module and its settings (``training/parts.py:build_parts``).

    One set of parts builds one module (the module takes these very objects, no copies)."""

    backbone: nn.Module
    projector: nn.Module
    objective: nn.Module
    views: ViewAugment
    regularizers: tuple[tuple[str, nn.Module], ...]  # (registry name, regularizer with its schedule)
    settings: ModuleSettings
    record: dict[str, Any] | None = None  # {"config", "data_info"}: what a checkpoint stores to rebuild


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
        backbone: nn.Module,
        projector: nn.Module,
        objective: nn.Module,
        views: ViewAugment,
        settings: ModuleSettings,
        regularizers: Sequence[tuple[str, nn.Module]] = (),
        record: Mapping[str, Any] | None = None,
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
        loss: Any = self.model.objective
        if self.views.n_local and self.model.uses_momentum_target and not loss.multi_view:
            raise ConfigError(
                f"objective {settings.objective_name} compares view pairs with a momentum target, which sees "
                "the global views only: drop data.views.overrides.local_crops (multi-crop is for dino, swav)."
            )
        self.regularizers = nn.ModuleList([reg for _, reg in regularizers])
        self.term_names = term_names([name for name, _ in regularizers])
        self.last_terms: dict[str, dict[str, float]] = {}
        self.last_r: Tensor | None = None
        self.last_y: Tensor | None = None
        self.train_time_s = 0.0  # accumulated over resumed sessions
        self._t_session: float | None = None

    @classmethod
    def from_plan(cls, plan: Planned) -> SSLModule:
        """The module of a run plan (its built parts, settings and checkpoint record)."""
        return cls.from_parts(plan.parts)

    @classmethod
    def from_parts(cls, p: ModelParts) -> SSLModule:
        """The module of built parts (``training/plan.py:build_parts``)."""
        return cls(p.backbone, p.projector, p.objective, p.views, p.settings, p.regularizers, p.record)

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
        return min(1.0, self.global_step / max(1, self.total_steps))

    def configure_optimizers(self) -> Any:
        """Optimizer over the online network (biases/norms without decay) and a per-step warm-up+cosine."""
        s = self.settings
        opt = build_optimizer(self.model.online_modules(), s.optim)
        sched = build_scheduler(opt, s.optim, s.steps_per_epoch, self.total_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    # -- forward --------------------------------------------------------------------------------------
    def encode_eval(self, x_uint8: Tensor) -> tuple[Tensor, Tensor]:
        """(r, z) of un-augmented images (the caller sets eval mode and no_grad)."""
        return self.model.encode(self.views.eval_transform(x_uint8))

    def _ssl_loss(self, zs: list[Tensor], ts: list[Tensor] | None) -> Tensor:
        """Objective averaged over every pair of views (i < j); BYOL-like losses also get the targets.

        A multi-view objective (DINO, SwAV, W-MSE) is called once with every view (global ones first)."""
        objective: Any = self.model.objective
        if objective.multi_view:
            loss: Tensor = objective.forward_views(zs, ts)
            return loss
        losses = []
        for i, j in itertools.combinations(range(len(zs)), 2):
            if ts is not None:
                losses.append(self.model.objective(zs[i], zs[j], ts[i], ts[j]))
            else:
                losses.append(self.model.objective(zs[i], zs[j]))
        return torch.stack(losses).mean() if len(losses) > 1 else losses[0]

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """One SSL step on a uint8 batch; returns L = L_ssl + sum of regularizer terms."""
        x, y = batch
        step = int(self.global_step)
        acc = int(self.trainer.accumulate_grad_batches) if self._trainer is not None else 1
        micro = step * acc + batch_idx % acc  # the micro-batch's own seed (= step without accumulation)
        torch.manual_seed(step_seed(self.settings.seed, micro, self.global_rank))
        views = self.views(x)
        rs, zs = self._encode_views(views, self.model.encode)
        tr: list[Tensor] | None = None
        tz: list[Tensor] | None = None
        if self.model.uses_momentum_target:  # the target sees the global views only
            tr, tz = self._encode_views(views[: self.views.n_views], self.model.encode_target)
        epoch = step / max(1, self.settings.steps_per_epoch)
        objective: Any = self.model.objective
        objective.set_progress(epoch)
        ssl = self._ssl_loss(zs, tz)
        terms: list[Tensor] = []
        reg: Any
        for reg in self.regularizers:
            reg.set_progress(epoch)
            if reg.target == "weights":
                terms.append(reg(self.model))
            else:
                terms.append(reg(rs, tr))
        total = ssl + torch.stack(terms).sum() if terms else ssl
        if not bool(torch.isfinite(total.detach())):
            self._raise_nonfinite(step, ssl, terms)
        self._log_terms(total, ssl, terms)
        self.last_r, self.last_y = rs[0].detach(), y
        return total

    @staticmethod
    def _encode_views(views: list[Tensor], encode: Any) -> tuple[list[Tensor], list[Tensor]]:
        """(r, z) per view; views of one size go through the network in one batch (multi-crop: 2 sizes)."""
        r_out: list[Tensor | None] = [None] * len(views)
        z_out: list[Tensor | None] = [None] * len(views)
        for shape in dict.fromkeys(tuple(v.shape) for v in views):
            idx = [i for i, v in enumerate(views) if tuple(v.shape) == shape]
            r_all, z_all = encode(torch.cat([views[i] for i in idx]))
            for i, r, z in zip(idx, r_all.chunk(len(idx)), z_all.chunk(len(idx)), strict=True):
                r_out[i], z_out[i] = r, z
        return [r for r in r_out if r is not None], [z for z in z_out if z is not None]

    def _log_terms(self, total: Tensor, ssl: Tensor, terms: list[Tensor]) -> None:
        """Log L, L_ssl, each term and its share term / L, the regularizers' and objective's stats, the lr."""
        bs = int(self.settings.batch_size)
        denom = float(total.detach().abs()) or 1.0
        logs = {"train/loss": float(total.detach()), "train/ssl_loss": float(ssl.detach())}
        self.last_terms = {}
        for name, reg, term in zip(self.term_names, self.regularizers, terms, strict=True):
            value = float(term.detach())
            coef: Any = getattr(reg, "coefficient", lambda: float("nan"))
            stats = {"value": value, "share": value / denom, "coefficient": float(coef())}
            stats.update({k: float(v) for k, v in getattr(reg, "last_stats", {}).items()})
            self.last_terms[name] = stats
            for key, v in stats.items():
                logs[f"train/reg/{name}" if key == "value" else f"train/reg/{name}_{key}"] = v
        for key, v in getattr(self.model.objective, "last_stats", {}).items():
            logs[f"train/objective/{key}"] = float(v)
        if self._trainer is not None and self.trainer.optimizers:
            logs["train/lr"] = float(self.trainer.optimizers[0].param_groups[0]["lr"])
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=bs, prog_bar=False)
        self.log("loss", logs["train/loss"], on_step=True, prog_bar=True, logger=False, batch_size=bs)

    def _raise_nonfinite(self, step: int, ssl: Tensor, terms: list[Tensor]) -> None:
        bad = [] if bool(torch.isfinite(ssl.detach())) else [f"objective {self.settings.objective_name}"]
        bad += [
            f"regularizer {n}" for n, t in zip(self.term_names, terms, strict=True) if not torch.isfinite(t)
        ]
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
        """Optimizer step, then the EMA update of the momentum target with the objective's m(progress)."""
        super().optimizer_step(*args, **kwargs)
        if self.model.uses_momentum_target:
            momentum: Any = self.model.objective.momentum
            self.model.update_target(float(momentum(self.progress())))

    def on_train_start(self) -> None:
        """Start the session clock."""
        self._t_session = time.perf_counter()

    def session_time(self) -> float:
        """Seconds of training in this session so far."""
        return 0.0 if self._t_session is None else time.perf_counter() - self._t_session

    def on_train_end(self) -> None:
        """Accumulate the session's training time."""
        self.train_time_s += self.session_time()
        self._t_session = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the accumulated training time."""
        checkpoint["dimcollapse_train_time_s"] = self.train_time_s + self.session_time()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the accumulated training time."""
        value = checkpoint.get("dimcollapse_train_time_s", 0.0)
        self.train_time_s = float(value) if math.isfinite(float(value)) else 0.0
