"""The exact merge of two row sets' moments (count, mean, centred cross-product M2), used everywhere.

Chan, Golub & LeVeque (1979): for parts a and b with n = n_a + n_b and delta = mean_b - mean_a,
mean = mean_a + delta n_b / n and M2 = M2_a + M2_b + delta delta^T n_a n_b / n. No uncentred sum of
large values is differenced, so the merge is as accurate as the parts. The streamed covariance
(``covariance_sums.Moments``) and ``CollapseMetrics`` (its DDP reduction) both merge with it.
"""

from __future__ import annotations

import torch


def merge_moments_into(
    m2: torch.Tensor,
    n_a: float,
    mean_a: torch.Tensor | None,
    n_b: float,
    mean_b: torch.Tensor | None,
    m2_b: torch.Tensor,
) -> torch.Tensor | None:
    """Add part b to part a in place: ``m2 += M2_b + delta delta^T n_a n_b / n`` (``m2`` is M2_a); return
    the merged mean mean_a + delta n_b / n. Without means (uncentred sums) the sums add and mean_a is
    returned. Both parts must hold rows (n_a, n_b > 0)."""
    m2 += m2_b
    if mean_a is None or mean_b is None:
        return mean_a
    n = n_a + n_b
    delta = mean_b - mean_a
    m2 += torch.outer(delta, delta) * (n_a * n_b / n)
    return mean_a + delta * (n_b / n)
