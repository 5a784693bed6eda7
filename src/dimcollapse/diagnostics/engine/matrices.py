"""A weight as a matrix: the one reshape every weight diagnostic, the monitor and the regularizers use.

A Linear weight is already (out x in); a conv kernel (C_out, C_in/groups, k...) becomes C_out x
(C_in/groups * prod k). The columns follow the weight's memory layout (a channels_last conv gives
kh*kw*C_in order), so the matrix is a view and a gradient through it lands in the parameter's own
layout without a copy. Singular values, Gram spectra and ||W W^T - I|| are invariant to that column
permutation P: (W P)(W P)^T = W W^T and (W P)^T (W P) = P^T (W^T W) P.
"""

from __future__ import annotations

import torch


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """W as a matrix: rows are output units / filters, shape (C_out, C_in * prod(kernel)) (a view when
    the memory layout allows; a 2-D weight is returned as it is)."""
    if weight.dim() <= 2 or weight.is_contiguous():
        return weight.reshape(weight.shape[0], -1)
    order = sorted(range(1, weight.dim()), key=lambda d: -weight.stride()[d])
    permuted = weight.permute(0, *order)
    if permuted.is_contiguous():
        return permuted.view(weight.shape[0], -1)
    return weight.reshape(weight.shape[0], -1)
