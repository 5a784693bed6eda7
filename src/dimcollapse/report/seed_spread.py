"""The seed-to-seed spread the project has measured for each metric: the margin a single-seed verdict needs.

Source: the 3-seed study of docs/results.md ("Anti-collapse regularizers on Fashion-MNIST", issue 5;
``configs/studies/regularizers_fmnist.yaml``, numbers in ``benchmarks/results/regularizers_fmnist.json``):
12 cells (SimCLR and BYOL, each alone and with SO, SRIP, last-layer, WeRank, LDReg) x seeds 0, 1, 2, 120
steps each. Each value is the pooled standard deviation over the 12 cells, sqrt(mean_c s_c^2), where s_c is
the sample standard deviation of the 3 seeds of cell c. Units are the metric's own (accuracies as fractions).

These are spreads of short runs (120 steps); a study that measures its own spread (>= 2 seeds per group)
uses that instead (report/claims.py). A metric that is missing here has no measured spread, and a
single-seed claim on it stays inconclusive.
"""

from __future__ import annotations

import math

SOURCE = "docs/results.md, 3-seed regularizer study on Fashion-MNIST (pooled std over 12 cells, 120 steps)"

SEED_SPREAD: dict[str, float] = {
    "knn_k200_top1": 0.009184,
    "knn_k20_top1": 0.006652,
    "linear_top1": 0.00921,
    "erank_r": 0.4451,
    "rankme_r": 1.104,
    "lid_mle_gmean_r": 0.1392,
    "weight_erank_mean": 0.01138,
    "tail_eig_r": 0.08932,
}


def seed_spread(metric: str) -> float | None:
    """The measured seed-to-seed standard deviation of ``metric`` (None when the project has none)."""
    return SEED_SPREAD.get(metric)


def single_seed_margin(metric: str, z: float = 2.0) -> float | None:
    """Margin a difference of two single runs must exceed: z * sqrt(2) * spread (std of a difference)."""
    s = seed_spread(metric)
    return None if s is None else z * math.sqrt(2.0) * s
