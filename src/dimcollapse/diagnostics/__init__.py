"""Pure collapse diagnostics: functions of tensors/arrays and modules, no training code (SPEC section 1).

Inputs are numpy arrays or torch tensors (CPU or CUDA), rows = samples. Spectra are float64 numpy
arrays sorted descending. Bad input raises ``dimcollapse.errors.InputError``.
"""

from dimcollapse.diagnostics.alignment import Alignment, alignment_matrix
from dimcollapse.diagnostics.alpha_req import AlphaReQ, alpha_req
from dimcollapse.diagnostics.engine.knn import knn_distances
from dimcollapse.diagnostics.engine.knn_backends import KnnBackend
from dimcollapse.diagnostics.features import feature_spectra
from dimcollapse.diagnostics.lid import (
    LidEstimate,
    lid_estimate,
    lid_from_distances,
    lid_mle,
    lid_mom,
    lid_summary,
)
from dimcollapse.diagnostics.lid_sampled import SampledLid, lid_sampled
from dimcollapse.diagnostics.lidar import lidar
from dimcollapse.diagnostics.rank import (
    collapsed_dimensions,
    effective_rank,
    explained_variance_dims,
    rankme,
    rankme_from_singular_values,
)
from dimcollapse.diagnostics.spectrum import CovarianceAccumulator, covariance_matrix, covariance_spectrum
from dimcollapse.diagnostics.summary import summarize
from dimcollapse.diagnostics.threshold import COLLAPSE_THRESHOLD
from dimcollapse.diagnostics.weights import weight_spectra

__all__ = [
    "COLLAPSE_THRESHOLD",
    "Alignment",
    "AlphaReQ",
    "CovarianceAccumulator",
    "KnnBackend",
    "LidEstimate",
    "SampledLid",
    "alignment_matrix",
    "alpha_req",
    "collapsed_dimensions",
    "covariance_matrix",
    "covariance_spectrum",
    "effective_rank",
    "explained_variance_dims",
    "feature_spectra",
    "knn_distances",
    "lid_estimate",
    "lid_from_distances",
    "lid_mle",
    "lid_mom",
    "lid_sampled",
    "lid_summary",
    "lidar",
    "rankme",
    "rankme_from_singular_values",
    "summarize",
    "weight_spectra",
]
