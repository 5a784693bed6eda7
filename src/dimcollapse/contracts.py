"""Typed contracts of the registered components (docs/architecture.md, "Component contracts").

Structural types: a component obeys its contract by having these attributes and call signatures, whether
or not it derives from the package's base class (``models.base.Backbone``, ``objectives.base.Objective``,
``regularizers.base.Regularizer``). ``tests/test_contracts.py`` builds every registered name and checks
the behaviour behind each attribute. Code that composes components (training, track) types against these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class Backbone(Protocol):
    """f: images [N, C, H, W] float -> representations r [N, out_dim]."""

    out_dim: int
    in_channels: int

    def __call__(self, x: Tensor) -> Tensor: ...

    def weight_layers(self) -> list[tuple[str, nn.Module]]:
        """Conv / Linear (attention) layers ordered input -> output, by ``named_modules`` name."""
        ...

    @property
    def last_layer_name(self) -> str:
        """The name of the last weight layer (the one last-layer regularization acts on)."""
        ...


@runtime_checkable
class Projector(Protocol):
    """g: representations r [N, in_dim] -> embeddings z [N, out_dim]; built with in_dim = backbone.out_dim."""

    in_dim: int
    out_dim: int

    def __call__(self, r: Tensor) -> Tensor: ...


@runtime_checkable
class Objective(Protocol):
    """SSL loss of two views' embeddings: ``loss(z1, z2)`` -> scalar (``loss(z1, z2, t1, t2)`` with a target).

    A pure term: no weight, schedule or clock. ``needs_dim``: the training module passes
    ``dim=projector.out_dim``. ``uses_momentum_target``: the objective also needs the momentum target's
    embeddings t1, t2; the run's EMA hook moves the target network and ``momentum_pairs()`` (the
    objective's own EMA copies) with the ``ema`` block's tau(step), the class's ``default_momentum`` when
    the block gives none. ``multi_view``: the module calls ``forward_views(zs, ts, **scheduled)`` once with
    every view. Scheduled values (DINO's teacher temperature) arrive as keyword arguments.
    ``last_stats`` holds the loss components of the last forward as detached tensors, for logging.
    """

    last_stats: dict[str, Tensor]

    @property
    def uses_momentum_target(self) -> bool: ...

    @property
    def needs_dim(self) -> bool: ...

    @property
    def multi_view(self) -> bool: ...

    @property
    def default_momentum(self) -> tuple[float, float]: ...

    @property
    def default_step(self) -> str:
        """The registered training step the objective trains with when the config names none."""
        ...

    def __call__(self, z1: Tensor, z2: Tensor, *targets: Tensor, **scheduled: float | bool) -> Tensor: ...

    def forward_views(self, zs: list[Tensor], ts: list[Tensor] | None = None) -> Tensor:
        """All views at once (multi_view objectives): global views first, ``ts`` the targets of those;
        the objective's scheduled values as keyword arguments with defaults."""
        ...

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, EMA copy) pairs the objective owns besides the target network (DINO: prototypes)."""
        ...

    def embedding_slice(self) -> int | None:
        """d0 when the loss reads only z[:, :d0] (DirectCLR), else None."""
        ...


@runtime_checkable
class Regularizer(Protocol):
    """An anti-collapse term: ``forward`` returns the raw term; the run weights it by c(step).

    ``default_weight`` / ``default_warmup`` / ``skip_when_off`` are read by the run's schedules only.
    ``last_stats`` holds detached tensors of the last call (``raw`` and the term's own statistics).
    """

    last_stats: dict[str, Tensor]

    @property
    def target(self) -> Literal["weights", "features"]: ...

    @property
    def default_weight(self) -> float | None: ...

    @property
    def default_warmup(self) -> str: ...

    @property
    def skip_when_off(self) -> bool: ...


@runtime_checkable
class WeightRegularizer(Regularizer, Protocol):
    """``target == "weights"``: ``reg(model)`` -> raw scalar; model is a backbone or an SSLModel."""

    def __call__(self, model: nn.Module) -> Tensor: ...


@runtime_checkable
class FeatureRegularizer(Regularizer, Protocol):
    """``target == "features"``: ``reg(features, reference=None)`` -> raw scalar.

    ``features`` are the representations r of each view (with gradient); ``reference`` extra detached
    features (e.g. the BYOL target's).
    """

    def __call__(self, features: Sequence[Tensor], reference: Sequence[Tensor] | None = None) -> Tensor: ...


@dataclass(frozen=True)
class StepBatch:
    """One training batch as a step receives it: the augmented ``views`` (float, the ``n_global`` global
    views first, then multi-crop local views) and the ``labels`` (-1: unlabelled)."""

    views: list[Tensor]
    n_global: int
    labels: Tensor


@dataclass(frozen=True)
class StepResult:
    """What a step returns: the SSL loss, the representations r (with gradient) the feature regularizers
    see (the first is the callbacks' r), and the momentum target's r of the global views (None without
    a target): the regularizers' ``reference``."""

    ssl: Tensor
    rs: list[Tensor]
    target_rs: list[Tensor] | None = None


class Networks(Protocol):
    """The networks a step drives (``training/model.py:SSLModel``): online f and g, the objective, and the
    momentum target when the objective has one."""

    @property
    def objective(self) -> Objective: ...

    @property
    def uses_momentum_target(self) -> bool: ...

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(r, z) = (f(x), g(f(x))) with the online network."""
        ...

    def encode_target(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(r, z) of the momentum target network (no gradient)."""
        ...


class StepValues(Protocol):
    """The schedules' values of one step a training step reads (``training/schedules.py:StepValues``)."""

    @property
    def objective(self) -> Mapping[str, float | bool]:
        """The objective's scheduled keywords (DINO's teacher temperature, ...)."""
        ...


@runtime_checkable
class TrainingStep(Protocol):
    """The shape of one SSL step (registry kind ``step``): ``step(batch, nets, values) -> StepResult``.

    Pure: no parameters, weights, schedules or clock (networks belong to the model and the objective;
    scheduled values arrive in ``values``); randomness comes from torch's generator, which the module seeds
    per step. ``check(nets, n_global, n_local)`` raises ConfigError, before anything is trained, when the
    networks or the views do not fit the step. The module adds the weighted regularizers to ``ssl``."""

    def __call__(self, batch: StepBatch, nets: Networks, values: StepValues) -> StepResult: ...

    def check(self, nets: Networks, n_global: int, n_local: int) -> None: ...
