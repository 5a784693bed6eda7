"""Projector variants of SPEC section 3, registered under kind "projector" on import."""

from dimcollapse.models.projectors.fixed import FixedLowRankDiagonalProjector, FixedLowRankProjector
from dimcollapse.models.projectors.orthogonal import OrthogonalProjector
from dimcollapse.models.projectors.subvector import ConstantSubvectorProjector, RandomSubvectorProjector
from dimcollapse.models.projectors.trainable import (
    DiagonalProjector,
    IdentityProjector,
    LinearProjector,
    MLPProjector,
)
from dimcollapse.models.projectors.vibcreg import VIbCRegProjector

__all__ = [
    "ConstantSubvectorProjector",
    "DiagonalProjector",
    "FixedLowRankDiagonalProjector",
    "FixedLowRankProjector",
    "IdentityProjector",
    "LinearProjector",
    "MLPProjector",
    "OrthogonalProjector",
    "RandomSubvectorProjector",
    "VIbCRegProjector",
]
