"""Toy linear models of DirectCLR's collapse theory (SPEC section 5), checked with diagnostics.

from dimcollapse.theory import simulate
res = simulate("augmentation", "runs/aug", steps=2000)   # figures + results.json in runs/aug
res["claims"]  # [{"claim", "measured", "holds"}, ...]
"""

from dimcollapse.theory.alignment import AlignmentConfig, run_alignment, spectral_init
from dimcollapse.theory.augmentation import AugmentationConfig, noisy_clean_ratio, run_augmentation
from dimcollapse.theory.depth import DepthConfig, run_depth
from dimcollapse.theory.lemmas import block_eigenvalues, lemma1_check, lemma2_gradient_error, lemma2_matrix
from dimcollapse.theory.losses import distance_infonce, dot_infonce, get_loss
from dimcollapse.theory.runner import EXPERIMENTS, make_config, run_experiment, simulate, write_outputs
from dimcollapse.theory.summary import run_all

__all__ = [
    "EXPERIMENTS",
    "AlignmentConfig",
    "AugmentationConfig",
    "DepthConfig",
    "block_eigenvalues",
    "distance_infonce",
    "dot_infonce",
    "get_loss",
    "lemma1_check",
    "lemma2_gradient_error",
    "lemma2_matrix",
    "make_config",
    "noisy_clean_ratio",
    "run_alignment",
    "run_all",
    "run_augmentation",
    "run_depth",
    "run_experiment",
    "simulate",
    "spectral_init",
    "write_outputs",
]
