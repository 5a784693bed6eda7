"""Backbones and projectors, registered under "backbone" and "projector" (SPEC section 3).

Importing this package registers every component:
    from dimcollapse.registry import build
    net = build("backbone", "small_resnet", in_channels=1)
    head = build("projector", "mlp", in_dim=net.out_dim)
"""

from dimcollapse.models import mlp, resnet, small_resnet, vit
from dimcollapse.models.base import Backbone, init_weights
from dimcollapse.models.iternorm import IterNorm
from dimcollapse.models.mlp import MLPBackbone
from dimcollapse.models.projectors import (
    ConstantSubvectorProjector,
    DiagonalProjector,
    FixedLowRankDiagonalProjector,
    FixedLowRankProjector,
    IdentityProjector,
    LinearProjector,
    MLPProjector,
    OrthogonalProjector,
    RandomSubvectorProjector,
    VIbCRegProjector,
)
from dimcollapse.models.resnet import ResNet, resnet18, resnet34, resnet50
from dimcollapse.models.small_resnet import small_resnet as build_small_resnet
from dimcollapse.models.vit import VisionTransformer, vit_base, vit_small, vit_tiny

__all__ = [
    "Backbone",
    "ConstantSubvectorProjector",
    "DiagonalProjector",
    "FixedLowRankDiagonalProjector",
    "FixedLowRankProjector",
    "IdentityProjector",
    "IterNorm",
    "LinearProjector",
    "MLPBackbone",
    "MLPProjector",
    "OrthogonalProjector",
    "RandomSubvectorProjector",
    "ResNet",
    "VIbCRegProjector",
    "VisionTransformer",
    "build_small_resnet",
    "init_weights",
    "mlp",
    "resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "small_resnet",
    "vit",
    "vit_base",
    "vit_small",
    "vit_tiny",
]
