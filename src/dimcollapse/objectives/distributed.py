"""Kept for one release: the distributed helpers now live in ``dimcollapse.utils.distributed``.

Import from there; this module only re-exports them so older imports keep working.
"""

from dimcollapse.utils.distributed import (
    all_gather_with_grad,
    all_reduce_sum,
    batch_sizes,
    gather_detached,
    global_batch_size,
    global_cross_moment,
    global_mean,
    global_variance,
    is_distributed,
    local_only,
    local_share,
    rank,
    sum_detached,
    world_size,
)

__all__ = [
    "all_gather_with_grad",
    "all_reduce_sum",
    "batch_sizes",
    "gather_detached",
    "global_batch_size",
    "global_cross_moment",
    "global_mean",
    "global_variance",
    "is_distributed",
    "local_only",
    "local_share",
    "rank",
    "sum_detached",
    "world_size",
]
