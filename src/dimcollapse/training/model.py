"""SSLModel: backbone f, projector g and objective (with its predictor), plus the momentum target for BYOL.

r = f(x) is the representation, z = g(r) the embedding. An objective with ``uses_momentum_target`` gets a
frozen copy of backbone + projector (``momentum_target``) updated by EMA after each optimizer step.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from dimcollapse import contracts
from dimcollapse.errors import ConfigError
from dimcollapse.objectives.momentum import ema_update, frozen_copy
from dimcollapse.registry import build, get
from dimcollapse.training.config import ModelConfig, ObjectiveConfig
from dimcollapse.training.schedules import split_objective_kwargs


def _accepts(factory: Any, key: str) -> bool:
    """True when ``factory`` takes keyword ``key`` (or **kwargs)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == key or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _layout(model: ModelConfig, factory: Any, channels_last: bool, explicit: bool) -> bool | None:
    """The backbone's ``channels_last`` keyword: ``model.backbone_kwargs`` first, else the run's choice
    (``channels_last``) where the backbone takes one (None: it takes none); an explicit
    trainer.channels_last that the backbone cannot follow, or that contradicts its kwargs, is refused."""
    given = model.backbone_kwargs.get("channels_last")
    if not _accepts(factory, "channels_last"):
        if explicit:
            raise ConfigError(
                f"trainer.channels_last applies to conv backbones (resnet*, small_resnet); backbone "
                f"'{model.backbone}' has no memory layout to choose: remove trainer.channels_last."
            )
        return None
    if given is not None and explicit and bool(given) != channels_last:
        raise ConfigError(
            f"trainer.channels_last={str(channels_last).lower()} contradicts model.backbone_kwargs."
            f"channels_last={str(bool(given)).lower()}; keep one of the two keys."
        )
    return bool(given) if given is not None else channels_last


def build_network(
    model: ModelConfig,
    objective: ObjectiveConfig,
    in_channels: int,
    image_size: int,
    channels_last: bool | None = None,
    channels_last_explicit: bool = False,
) -> tuple[contracts.Backbone, contracts.Projector, contracts.Objective]:
    """(backbone, projector(in_dim=D), objective), built in this order (``in_channels``, ``image_size``
    and the memory layout ``channels_last`` passed to the backbone where accepted, ``dim`` = d to
    objectives that need it). ``channels_last_explicit``: the layout was asked for by trainer.channels_last.
    """
    bkw = dict(model.backbone_kwargs)
    factory = get("backbone", model.backbone)
    if _accepts(factory, "in_channels"):
        bkw.setdefault("in_channels", in_channels)
    if _accepts(factory, "image_size"):
        bkw.setdefault("image_size", image_size)
    if channels_last is not None:
        layout = _layout(model, factory, channels_last, channels_last_explicit)
        if layout is not None:
            bkw["channels_last"] = layout
    backbone: contracts.Backbone = build("backbone", model.backbone, **bkw)
    if not hasattr(backbone, "out_dim"):
        raise ConfigError(f"backbone '{model.backbone}' does not expose out_dim; it breaks the contract.")
    projector: contracts.Projector = build(
        "projector", model.projector, in_dim=int(backbone.out_dim), **model.projector_kwargs
    )
    okw = split_objective_kwargs(objective.name, objective.kwargs)[1]  # scheduled keys: the run's schedules
    obj_cls = get("objective", objective.name)
    if getattr(obj_cls, "needs_dim", False):
        okw.setdefault("dim", int(projector.out_dim))
    loss: contracts.Objective = build("objective", objective.name, **okw)
    d0 = loss.embedding_slice()
    if d0 is not None and d0 > int(projector.out_dim):
        raise ConfigError(
            f"objective {objective.name}: d0 = {d0} is larger than the embedding size "
            f"{projector.out_dim} "
            f"(backbone '{model.backbone}' D = {backbone.out_dim}, projector '{model.projector}'); "
            f"choose d0 <= {projector.out_dim}."
        )
    return backbone, projector, loss


def as_module(component: object, what: str) -> nn.Module:
    """``component`` as the ``nn.Module`` every registered component also is (a ConfigError otherwise):
    the contracts type what the run calls, the module tree holds the parameters."""
    if not isinstance(component, nn.Module):
        raise ConfigError(
            f"the {what} {type(component).__name__} is not a torch.nn.Module; derive it from one."
        )
    return component


class SSLModel(nn.Module):
    """Children ``backbone``, ``projector``, ``objective`` (and ``momentum_target`` for BYOL-like losses),
    typed by their contracts (``dimcollapse.contracts``); each is also an ``nn.Module`` (``as_module``)."""

    backbone: contracts.Backbone
    projector: contracts.Projector
    objective: contracts.Objective

    def __init__(
        self, backbone: contracts.Backbone, projector: contracts.Projector, objective: contracts.Objective
    ) -> None:
        super().__init__()
        self.backbone = as_module(backbone, "backbone")  # type: ignore[assignment]
        self.projector = as_module(projector, "projector")  # type: ignore[assignment]
        self.objective = as_module(objective, "objective")  # type: ignore[assignment]
        self.momentum_target: nn.ModuleDict | None = None
        if objective.uses_momentum_target:
            self.momentum_target = nn.ModuleDict(
                {
                    "backbone": frozen_copy(as_module(backbone, "backbone")),
                    "projector": frozen_copy(as_module(projector, "projector")),
                }
            )

    @classmethod
    def from_config(
        cls, model: ModelConfig, objective: ObjectiveConfig, in_channels: int, image_size: int
    ) -> SSLModel:
        """SSLModel(*build_network(model, objective, in_channels, image_size))."""
        return cls(*build_network(model, objective, in_channels, image_size))

    @property
    def uses_momentum_target(self) -> bool:
        """True when the objective compares with an EMA target network."""
        return self.momentum_target is not None

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(r, z) = (f(x), g(f(x))) with the online network."""
        r = self.backbone(x)
        return r, self.projector(r)

    @torch.no_grad()
    def encode_target(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(r, z) of the momentum target network (no gradient)."""
        if self.momentum_target is None:
            raise ConfigError("this objective has no momentum target network.")
        r = self.momentum_target["backbone"](x)
        return r, self.momentum_target["projector"](r)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, EMA target) pairs: backbone and projector, then the objective's own (DINO's prototypes);
        empty without a momentum target. The EMA hook (``training/ema.py``) moves them."""
        if self.momentum_target is None:
            return []
        pairs: list[tuple[nn.Module, nn.Module]] = [
            (as_module(self.backbone, "backbone"), self.momentum_target["backbone"]),
            (as_module(self.projector, "projector"), self.momentum_target["projector"]),
        ]
        return pairs + list(self.objective.momentum_pairs())

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """theta_t <- m theta_t + (1 - m) theta_online for every momentum pair (BYOL section 3.1)."""
        for online, target in self.momentum_pairs():
            ema_update(target, online, momentum)

    def online_modules(self) -> nn.ModuleDict:
        """The modules the optimizer trains, without the momentum target (for parameter groups)."""
        parts = {"backbone": self.backbone, "projector": self.projector, "objective": self.objective}
        return nn.ModuleDict({name: as_module(part, name) for name, part in parts.items()})
