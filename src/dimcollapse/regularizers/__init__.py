"""Anti-collapse regularizers, registered under "regularizer" (SPEC section 4).

from dimcollapse.registry import build
so = build("regularizer", "so")             # weights: so(model) -> raw term (the run weights it)
ld = build("regularizer", "ldreg")         # features: ld([r1, r2], reference=None)
"""

from dimcollapse.regularizers.base import Regularizer
from dimcollapse.regularizers.gram import gram_deviation_sq, weight_matrix
from dimcollapse.regularizers.koleo import KoLeo, koleo_term
from dimcollapse.regularizers.last_layer import LastLayerRegularizer
from dimcollapse.regularizers.layers import last_weight_layer, select_weight_layers
from dimcollapse.regularizers.ldreg import LDReg, MinLID
from dimcollapse.regularizers.sigreg import SIGReg, epps_pulley
from dimcollapse.regularizers.so import SoftOrthogonality
from dimcollapse.regularizers.srip import SRIP, power_sigma_max
from dimcollapse.regularizers.weights import WeightLayerRegularizer
from dimcollapse.regularizers.werank import WeRank
from dimcollapse.regularizers.whitening import FeatureWhitening, covariance_term, variance_term

__all__ = [
    "SRIP",
    "FeatureWhitening",
    "KoLeo",
    "LDReg",
    "LastLayerRegularizer",
    "MinLID",
    "Regularizer",
    "SIGReg",
    "SoftOrthogonality",
    "WeRank",
    "WeightLayerRegularizer",
    "covariance_term",
    "epps_pulley",
    "gram_deviation_sq",
    "koleo_term",
    "last_weight_layer",
    "power_sigma_max",
    "select_weight_layers",
    "variance_term",
    "weight_matrix",
]
