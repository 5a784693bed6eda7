"""Typed contracts of the registered components (docs/architecture.md, "Component contracts").

Structural types: a component obeys its contract by having these attributes and call signatures, whether
or not it derives from the package's base class (``models.base.Backbone``, ``objectives.base.Objective``,
``regularizers.base.Regularizer``). ``tests/test_contracts.py`` builds every registered name and checks
the behaviour behind each attribute. Code that composes components (training, track) types against these.
"""

from __future__ import annotations

from collections.abc import Sequence
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

    ``needs_dim``: the training module passes ``dim=projector.out_dim``. ``uses_momentum_target``: the
    objective also needs the momentum target's embeddings t1, t2 and has ``momentum(progress)``.
    ``last_stats`` holds the loss components of the last forward, for logging.
    """

    uses_momentum_target: bool
    needs_dim: bool
    last_stats: dict[str, float]

    def __call__(self, z1: Tensor, z2: Tensor, *targets: Tensor) -> Tensor: ...


@runtime_checkable
class MomentumObjective(Objective, Protocol):
    """An objective with a momentum target (BYOL): EMA coefficient tau(progress), progress in [0, 1]."""

    def momentum(self, progress: float) -> float: ...


@runtime_checkable
class Regularizer(Protocol):
    """An anti-collapse term with a coefficient schedule: term = coefficient(epoch) * raw term."""

    target: Literal["weights", "features"]
    last_stats: dict[str, float]

    def set_progress(self, epoch: float) -> None: ...

    def coefficient(self) -> float: ...


@runtime_checkable
class WeightRegularizer(Regularizer, Protocol):
    """``target == "weights"``: ``reg(model)`` -> weighted scalar; model is a backbone or an SSLModel."""

    def __call__(self, model: nn.Module) -> Tensor: ...


@runtime_checkable
class FeatureRegularizer(Regularizer, Protocol):
    """``target == "features"``: ``reg(features, reference=None)`` -> weighted scalar.

    ``features`` are the representations r of each view (with gradient); ``reference`` extra detached
    features (e.g. the BYOL target's).
    """

    def __call__(self, features: Sequence[Tensor], reference: Sequence[Tensor] | None = None) -> Tensor: ...
