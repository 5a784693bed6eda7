"""Kept for one release: the synced BatchNorm now lives in ``dimcollapse.utils.batchnorm``.

Import from there; this module only re-exports it so older imports keep working.
"""

from dimcollapse.utils.batchnorm import (
    GlobalBatchNorm1d,
    GlobalBatchNorm2d,
    convert_to_global_batchnorm,
    global_batch_norm,
)

__all__ = ["GlobalBatchNorm1d", "GlobalBatchNorm2d", "convert_to_global_batchnorm", "global_batch_norm"]
