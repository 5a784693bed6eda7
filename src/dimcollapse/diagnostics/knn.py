"""Blocked k-nearest-neighbour distances in torch: never an N x N matrix when N exceeds the block size.

Per block of queries, |r|^2 - 2 q.r (squared distance minus the row-constant |q|^2; one matrix
product) ranks the reference rows, the k smallest are selected with ``topk``, and their distances are
recomputed exactly as ||q - r|| from the difference vectors, so duplicates give exactly 0 and the
result is differentiable in both Q and R. When R is None the set is queried against itself and each
query's own row is excluded (other rows identical to it are still neighbours, at distance 0).
"""

from __future__ import annotations

from typing import Literal, overload

import torch

from dimcollapse.diagnostics._validate import ArrayLike, check_positive_int, matrix
from dimcollapse.errors import InputError

_GATHER_ELEMS = 2**24  # cap on block * k * D elements of the exact recomputation


@overload
def knn_distances(
    Q: ArrayLike,
    R: ArrayLike | None = ...,
    k: int = ...,
    block_size: int = ...,
    return_indices: Literal[False] = ...,
) -> torch.Tensor: ...


@overload
def knn_distances(
    Q: ArrayLike, R: ArrayLike | None, k: int, block_size: int, return_indices: Literal[True]
) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def knn_distances(
    Q: ArrayLike,
    R: ArrayLike | None = ...,
    k: int = ...,
    block_size: int = ...,
    *,
    return_indices: Literal[True],
) -> tuple[torch.Tensor, torch.Tensor]: ...


def knn_distances(
    Q: ArrayLike,
    R: ArrayLike | None = None,
    k: int = 20,
    block_size: int = 2048,
    return_indices: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Distances r_1 <= ... <= r_k from each row of Q to its k nearest rows of R (Euclidean), shape (n_Q, k).

    Returns a torch tensor on Q's device (numpy input becomes a CPU tensor); with ``return_indices``
    also the int64 indices into R (or into Q when R is None, self excluded).
    """
    k = check_positive_int(k, "k")
    block_size = check_positive_int(block_size, "block_size")
    q = matrix(Q, "Q", min_rows=1)
    self_query = R is None
    r = q if self_query else matrix(R, "R", min_rows=1)
    if not self_query:
        if r.shape[1] != q.shape[1]:
            raise InputError(f"Q has {q.shape[1]} columns but R has {r.shape[1]}; they must match.")
        r = r.to(device=q.device, dtype=torch.promote_types(q.dtype, r.dtype))
        q = q.to(r.dtype)
    available = r.shape[0] - (1 if self_query else 0)
    if k > available:
        where = "the other rows of the set" if self_query else "rows in the reference set"
        raise InputError(
            f"k={k} neighbours requested but there are only {available} {where} (N={r.shape[0]}). Use k < N."
        )
    dist, idx = knn_core(q, None if self_query else r, k, block_size)
    return (dist, idx) if return_indices else dist


def knn_core(
    q: torch.Tensor, r: torch.Tensor | None, k: int, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unchecked blocked k-NN on validated tensors (same dtype/device); r=None queries q against itself."""
    self_query = r is None
    if r is None:
        r = q
    d = q.shape[1]
    rows = max(1, min(block_size, _GATHER_ELEMS // max(1, k * d)))
    r_det = r.detach()
    r_sq = (r_det * r_det).sum(1)
    dists, idxs = [], []
    for start in range(0, q.shape[0], rows):
        qb = q[start : start + rows]
        qb_det = qb.detach()
        with torch.no_grad():
            # |q|^2 is constant along a row, so ranking |r|^2 - 2 q.r ranks the distances (one fused addmm).
            d2 = torch.addmm(r_sq[None, :], qb_det, r_det.T, beta=1.0, alpha=-2.0)
            if self_query:
                own = torch.arange(start, start + qb.shape[0], device=q.device)
                d2[torch.arange(qb.shape[0], device=q.device), own] = float("inf")
            idx = torch.topk(d2, k, dim=1, largest=False, sorted=False).indices
        diff = qb[:, None, :] - r[idx]
        sq = (diff * diff).sum(-1)
        # sqrt has an infinite derivative at 0: differentiate through a clamped copy, keep exact zeros.
        dist = torch.where(sq > 0, sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt(), torch.zeros_like(sq))
        dist, order = torch.sort(dist, dim=1)
        dists.append(dist)
        idxs.append(torch.gather(idx, 1, order))
    return torch.cat(dists), torch.cat(idxs)
