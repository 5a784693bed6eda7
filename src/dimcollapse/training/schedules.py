"""Every scheduled value of a run, computed from the config once per step and passed as values.

    schedules = build_schedules(cfg, steps_per_epoch, objective_class, regularizer_classes)
    v = schedules.at(step)      # v.lr_factor, v.coefficients, v.momentum, v.objective (keyword values)

The components stay pure (no weight, schedule or clock inside a loss or regularizer): the training module
sums ``L = L_ssl + sum_j c_j(step) * term_j`` with ``v.coefficients``, the EMA hook moves the momentum
targets with ``v.momentum``, and the objective receives its scheduled keywords (DINO's teacher temperature,
SwAV's queue start) as arguments. A config entry names the schedule keys next to the component's own
keywords (``regularizers: [{name: so, kwargs: {weight: 1e-3, warmup_epochs: 5, layers: ...}}]``);
``split_term_kwargs`` / ``split_objective_kwargs`` separate them before the component is built.

- Coefficients (SPEC section 4): c(epoch) = weight * warm(epoch) * step(epoch) * [epoch < off_epoch].
- EMA momentum (BYOL section 3.2): tau(p) = final - (final - base) (cos(pi p) + 1) / 2, p = step / total.
- DINO's teacher temperature: linear from warmup_teacher_temp to teacher_temp over the first epochs.
- lr: the optimizer's warm-up + cosine multiplier (``training/optim.py:warmup_cosine``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from dimcollapse.errors import ConfigError
from dimcollapse.training.config import OptimConfig, RunConfig
from dimcollapse.training.optim import warmup_cosine

SCHEDULES = ("constant", "step")
WARMUP_MODES = ("linear", "off")


def number(name: str, value: Any) -> float:
    """``value`` as a float; text, lists or mappings (e.g. ``base_momentum: abc``) are a ConfigError naming
    ``name`` instead of float()'s ValueError."""
    if isinstance(value, (str, bytes, list, tuple, set, dict)) or value is None:
        raise ConfigError(f"{name} must be a number, got {value!r}.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}.") from None


def _check_nonneg(name: str, value: float) -> float:
    value = number(name, value)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value}. Give a non-negative value.")
    return value


class ScheduleOptions(TypedDict, total=False):
    """The coefficient keywords of a regularizer's config entry (meaning: ``CoefficientSchedule``)."""

    weight: float
    schedule: str
    milestones: Sequence[float]
    multipliers: Sequence[float]
    warmup_epochs: float
    off_epoch: float | None


SCHEDULE_OPTIONS: tuple[str, ...] = tuple(ScheduleOptions.__annotations__)


@dataclass
class CoefficientSchedule:
    """c(epoch) = weight * warm(epoch) * step(epoch) * [epoch < off_epoch].

    - ``schedule="constant"``: step(epoch) = 1.
    - ``schedule="step"``: step(epoch) = multipliers[i] for the last milestone i with milestones[i] <= epoch
      (1 before the first milestone); the literature (SO / SRIP) uses multipliers 1e-3, 1e-4, 1e-6.
    - warm-up: ``warmup="linear"`` ramps from 0 to 1 over ``warmup_epochs``; ``warmup="off"`` keeps the term
      switched off (c = 0) for epoch < ``warmup_epochs`` (LDReg's warm-up).
    - ``off_epoch``: from this epoch on c = 0.
    """

    weight: float
    schedule: str = "constant"
    milestones: Sequence[float] = field(default_factory=tuple)
    multipliers: Sequence[float] = field(default_factory=tuple)
    warmup_epochs: float = 0.0
    warmup: str = "linear"
    off_epoch: float | None = None

    def __post_init__(self) -> None:
        self.weight = _check_nonneg("regularizer weight (coefficient)", self.weight)
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown coefficient schedule '{self.schedule}'. Valid schedules: {', '.join(SCHEDULES)}."
            )
        if self.warmup not in WARMUP_MODES:
            raise ConfigError(
                f"unknown warm-up mode '{self.warmup}'. Valid modes: {', '.join(WARMUP_MODES)}."
            )
        self.warmup_epochs = _check_nonneg("warmup_epochs", self.warmup_epochs)
        self.milestones = tuple(_check_nonneg("schedule milestone", m) for m in self.milestones)
        self.multipliers = tuple(_check_nonneg("schedule multiplier", m) for m in self.multipliers)
        if self.schedule == "step":
            if len(self.milestones) != len(self.multipliers) or not self.milestones:
                raise ConfigError(
                    "step schedule needs milestones and multipliers of the same non-zero length, got "
                    f"{len(self.milestones)} milestones and {len(self.multipliers)} multipliers "
                    "(e.g. milestones=[20, 50, 70], multipliers=[1e-3, 1e-4, 1e-6])."
                )
            if list(self.milestones) != sorted(self.milestones):
                raise ConfigError(f"schedule milestones must be increasing, got {list(self.milestones)}.")
        elif self.milestones or self.multipliers:
            raise ConfigError(
                "milestones / multipliers are only used with schedule='step'; set schedule='step'."
            )
        if self.off_epoch is not None:
            self.off_epoch = _check_nonneg("off_epoch", self.off_epoch)

    def __call__(self, epoch: float) -> float:
        """The coefficient at (fractional) ``epoch``."""
        if self.off_epoch is not None and epoch >= self.off_epoch:
            return 0.0
        factor = 1.0
        if self.warmup_epochs > 0 and epoch < self.warmup_epochs:
            factor = 0.0 if self.warmup == "off" else max(epoch, 0.0) / self.warmup_epochs
        if self.schedule == "step":
            step = 1.0
            for milestone, mult in zip(self.milestones, self.multipliers, strict=True):
                if epoch >= milestone:
                    step = mult
            factor *= step
        return self.weight * factor


def coefficient_schedule(term_class: Any, options: Mapping[str, Any]) -> CoefficientSchedule:
    """The schedule of one regularizer entry: ``options`` (SCHEDULE_OPTIONS keys) over the class defaults
    (``default_weight``, ``default_warmup``: "linear" ramps, "off" holds the term at 0)."""
    opts = dict(options)
    weight = opts.pop("weight", None)
    default = getattr(term_class, "default_weight", None)
    chosen = default if weight is None else weight
    if chosen is None:
        raise ConfigError("a regularizer entry needs a weight (kwargs: {weight: ...}); it has no default.")
    warmup = str(getattr(term_class, "default_warmup", "linear"))
    return CoefficientSchedule(weight=number("regularizer weight", chosen), warmup=warmup, **opts)


def split_term_kwargs(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(schedule keywords, the component's own keywords) of a regularizer's config entry."""
    sched = {k: v for k, v in kwargs.items() if k in SCHEDULE_OPTIONS}
    own = {k: v for k, v in kwargs.items() if k not in SCHEDULE_OPTIONS}
    return sched, own


def cosine_momentum(progress: float, base: float = 0.99, final: float = 1.0) -> float:
    """tau(p) = final - (final - base) (cos(pi p) + 1) / 2, p in [0, 1] clipped (BYOL section 3.2)."""
    if not math.isfinite(progress):
        raise ConfigError(f"momentum: progress must be a finite number in [0, 1], got {progress!r}.")
    p = min(max(float(progress), 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * p) + 1.0) / 2.0


@dataclass(frozen=True)
class MomentumSchedule:
    """m(p) = cosine_momentum(p, base, final), checked 0 <= base <= final <= 1 (the ``ema`` config block)."""

    base: float = 0.99
    final: float = 1.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.base <= self.final <= 1.0):
            raise ConfigError(
                "ema: momentum must satisfy 0 <= base_momentum <= final_momentum <= 1, got "
                f"base_momentum={self.base!r}, final_momentum={self.final!r}."
            )

    def __call__(self, progress: float) -> float:
        """The EMA coefficient at progress p in [0, 1] (cosine from base to final)."""
        return cosine_momentum(progress, self.base, self.final)


def teacher_temperature(epoch: float, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """tau_t(e) = warmup + (temp - warmup) e / (W - 1) for the integer epoch e < W (DINO), else temp."""
    e = int(epoch)
    if e >= warmup_epochs:
        return temp
    return warmup_temp + (temp - warmup_temp) * (e / (warmup_epochs - 1) if warmup_epochs > 1 else 0.0)


@dataclass(frozen=True)
class ObjectiveSchedule:
    """The scheduled keywords of one objective: the config keys it reads (with defaults), a check, and
    ``values(settings, epoch)`` -> the keyword values passed to the objective's forward at that epoch."""

    defaults: Mapping[str, float]
    values: Callable[[Mapping[str, float], float], dict[str, float | bool]]
    check: Callable[[Mapping[str, float]], None] = lambda s: None


def _check_dino(s: Mapping[str, float]) -> None:
    if not (s["teacher_temp"] > 0 and s["warmup_teacher_temp"] > 0):
        raise ConfigError(
            f"dino: teacher_temp and warmup_teacher_temp must be positive numbers, got {s['teacher_temp']!r} "
            f"and {s['warmup_teacher_temp']!r}."
        )
    if s["warmup_teacher_temp_epochs"] < 0 or s["freeze_last_layer_epochs"] < 0:
        raise ConfigError("dino: warmup_teacher_temp_epochs and freeze_last_layer_epochs must be >= 0.")


def _dino_values(s: Mapping[str, float], epoch: float) -> dict[str, float | bool]:
    temp = teacher_temperature(
        epoch, s["warmup_teacher_temp"], s["teacher_temp"], int(s["warmup_teacher_temp_epochs"])
    )
    return {"teacher_temp": temp, "freeze_prototypes": epoch < s["freeze_last_layer_epochs"]}


def _swav_values(s: Mapping[str, float], epoch: float) -> dict[str, float | bool]:
    return {
        "use_queue": epoch >= s["queue_start_epoch"],
        "freeze_prototypes": epoch < s["freeze_prototypes_epochs"],
    }


def _check_swav(s: Mapping[str, float]) -> None:
    if s["queue_start_epoch"] < 0 or s["freeze_prototypes_epochs"] < 0:
        raise ConfigError("swav: queue_start_epoch and freeze_prototypes_epochs must be >= 0.")


OBJECTIVE_SCHEDULES: dict[str, ObjectiveSchedule] = {
    "dino": ObjectiveSchedule(
        {
            "teacher_temp": 0.04,
            "warmup_teacher_temp": 0.04,
            "warmup_teacher_temp_epochs": 0,
            "freeze_last_layer_epochs": 0.0,
        },
        _dino_values,
        _check_dino,
    ),
    "swav": ObjectiveSchedule(
        {"queue_start_epoch": 0.0, "freeze_prototypes_epochs": 0.0}, _swav_values, _check_swav
    ),
}
MOMENTUM_KEYS = ("base_momentum", "final_momentum")  # accepted in objective.kwargs too (older recipes)


def split_objective_kwargs(name: str, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(scheduled keywords, the objective's own keywords) of ``objective.kwargs`` for objective ``name``."""
    spec = OBJECTIVE_SCHEDULES.get(name)
    keys = set(MOMENTUM_KEYS) | set(spec.defaults if spec is not None else ())
    return {k: v for k, v in kwargs.items() if k in keys}, {k: v for k, v in kwargs.items() if k not in keys}


@dataclass(frozen=True)
class StepValues:
    """The scheduled values of one optimizer step."""

    step: int
    epoch: float  # step / steps_per_epoch
    progress: float  # step / total_steps, in [0, 1]
    lr_factor: float  # multiplier of optim.lr
    coefficients: tuple[float, ...]  # c_j(epoch), one per regularizer in config order
    momentum: float | None  # EMA coefficient of the momentum targets (None: no target)
    objective: dict[str, float | bool]  # keyword values for the objective's forward


@dataclass(frozen=True)
class Schedules:
    """Every schedule of a run, built once from the config (``build_schedules``); ``at(step)``."""

    steps_per_epoch: int
    total_steps: int
    lr: Callable[[int], float]
    coefficients: tuple[CoefficientSchedule, ...] = ()
    momentum: MomentumSchedule | None = None
    objective_name: str = ""
    objective_settings: Mapping[str, float] = field(default_factory=dict)

    def epoch(self, step: int) -> float:
        """The fractional epoch of global step ``step``."""
        return step / max(1, self.steps_per_epoch)

    def progress(self, step: int) -> float:
        """Fraction of the run done at ``step``, in [0, 1]."""
        return min(1.0, step / max(1, self.total_steps))

    def at(self, step: int) -> StepValues:
        """All scheduled values at global step ``step``."""
        epoch = self.epoch(step)
        spec = OBJECTIVE_SCHEDULES.get(self.objective_name)
        return StepValues(
            step=int(step),
            epoch=epoch,
            progress=self.progress(step),
            lr_factor=float(self.lr(step)),
            coefficients=tuple(c(epoch) for c in self.coefficients),
            momentum=None if self.momentum is None else self.momentum(self.progress(step)),
            objective={} if spec is None else spec.values(self.objective_settings, epoch),
        )


def objective_settings(name: str, scheduled: Mapping[str, Any]) -> dict[str, float]:
    """The objective's schedule settings: its defaults overridden by ``scheduled`` (checked)."""
    spec = OBJECTIVE_SCHEDULES.get(name)
    if spec is None:
        return {}
    out = {k: number(f"objective.kwargs.{k}", scheduled.get(k, v)) for k, v in spec.defaults.items()}
    spec.check(out)
    return out


def momentum_schedule(
    objective_class: Any, ema: Mapping[str, float | None], scheduled: Mapping[str, Any]
) -> MomentumSchedule | None:
    """The EMA schedule of a momentum-target objective: the ``ema`` block, else the older objective keys,
    else the objective's ``default_momentum``; None when the objective has no momentum target."""
    if not getattr(objective_class, "uses_momentum_target", False):
        given = [k for k in MOMENTUM_KEYS if scheduled.get(k) is not None or ema.get(k) is not None]
        if given:
            raise ConfigError(
                f"{', '.join(given)}: this objective has no momentum target; remove the key(s)."
            )
        return None
    base, final = getattr(objective_class, "default_momentum", (0.99, 1.0))
    values = [base, final]
    for i, key in enumerate(MOMENTUM_KEYS):
        old, new = scheduled.get(key), ema.get(key)
        old = None if old is None else number(f"objective.kwargs.{key}", old)
        new = None if new is None else number(f"ema.{key}", new)
        if old is not None and new is not None and old != new:
            raise ConfigError(
                f"{key} is given twice (objective.kwargs.{key}={old!r}, ema.{key}={new!r}); keep ema.{key}."
            )
        chosen = new if new is not None else old
        if chosen is not None:
            values[i] = chosen
    return MomentumSchedule(values[0], values[1])


@dataclass(frozen=True)
class LRSchedule:
    """The lr multiplier of step s: ``warmup_cosine(s, warmup_steps, total_steps, min_fraction)``
    (a plain object, so a module holding it pickles for spawned processes)."""

    warmup_steps: int
    total_steps: int
    min_fraction: float = 0.0

    def __call__(self, step: int) -> float:
        return warmup_cosine(step, self.warmup_steps, self.total_steps, self.min_fraction)


def lr_schedule(optim: OptimConfig, steps_per_epoch: int, total_steps: int) -> LRSchedule:
    """The lr multiplier of ``optim``: warm-up over optim.warmup_epochs x steps per epoch, then cosine."""
    warmup = min(total_steps, round(optim.warmup_epochs * steps_per_epoch))
    return LRSchedule(warmup, total_steps, optim.min_lr_fraction)


def plain_schedules(
    optim: OptimConfig,
    steps_per_epoch: int,
    coefficients: Sequence[float | CoefficientSchedule] = (),
    momentum: MomentumSchedule | None = None,
) -> Schedules:
    """Schedules without a config (hand-made modules): optim's lr and length, the given coefficients
    (a number: constant), the given EMA momentum."""
    total = int(optim.max_steps or optim.epochs * steps_per_epoch)
    coefs = tuple(
        c if isinstance(c, CoefficientSchedule) else CoefficientSchedule(float(c)) for c in coefficients
    )
    return Schedules(int(steps_per_epoch), total, lr_schedule(optim, steps_per_epoch, total), coefs, momentum)


def build_schedules(
    cfg: RunConfig, steps_per_epoch: int, total_steps: int, objective_class: Any, term_classes: Sequence[Any]
) -> Schedules:
    """The run's schedules from ``cfg``: lr (optim block), one coefficient per regularizer entry, the EMA
    momentum (ema block) and the objective's scheduled keywords, for ``total_steps`` optimizer steps."""
    coefs = tuple(
        coefficient_schedule(cls, split_term_kwargs(r.kwargs)[0])
        for cls, r in zip(term_classes, cfg.regularizers, strict=True)
    )
    scheduled, _ = split_objective_kwargs(cfg.objective.name, cfg.objective.kwargs)
    ema = {"base_momentum": cfg.ema.base_momentum, "final_momentum": cfg.ema.final_momentum}
    return Schedules(
        steps_per_epoch=int(steps_per_epoch),
        total_steps=int(total_steps),
        lr=lr_schedule(cfg.optim, steps_per_epoch, total_steps),
        coefficients=coefs,
        momentum=momentum_schedule(objective_class, ema, scheduled),
        objective_name=cfg.objective.name,
        objective_settings=objective_settings(cfg.objective.name, scheduled),
    )
