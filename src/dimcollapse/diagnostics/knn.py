"""k-nearest-neighbour distances in torch, tiled: no N x N (or block x N) distance matrix is ever stored.

Exact search (``backend="exact"``): queries in blocks of ``TILE_ROWS``, the reference set in tiles of
``TILE_COLS`` rows (a 2 MB float32 tile that stays in cache); each tile's ranking scores |r|^2 - 2 q.r
(the squared distance minus the row-constant |q|^2: one GEMM of [q, 1] with [-2 r, |r|^2], numpy's BLAS
on CPU) go into one reused buffer and
neighbours are selected as the tiles are computed: the first tile's k best give every query a bound tau
(its current k-th best); a later tile is summarised by the minimum of each group of ``_GROUP`` columns,
only groups below tau are tested entry by entry, and the few entries below tau are merged with the k
best by one small ``topk``, which tightens tau. No full ``topk`` or ``nonzero`` of a tile after the first.
Other backends (faiss, see
``knn_backends``) only choose the neighbours. Either way the k distances are then recomputed exactly as
||q - r|| from the difference vectors, so duplicates give exactly 0 and the result is differentiable in
both Q and R. When R is None the set is queried against itself and each query's own row is excluded
(other rows identical to it are still neighbours, at distance 0).
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np
import torch

from dimcollapse.diagnostics._validate import ArrayLike, check_positive_int, matrix
from dimcollapse.diagnostics.knn_backends import BackendLike, resolve_backend
from dimcollapse.errors import InputError

_GATHER_ELEMS = 2**24  # cap on block * k * D elements of the exact recomputation
TILE_COLS = 2048  # reference rows per tile of the exact search
TILE_ROWS = 256  # query rows per tile: a 256 x 2048 float32 tile (2 MB) stays in cache
_GROUP = 16  # tile columns summarised by one minimum before entries are tested one by one


@overload
def knn_distances(
    Q: ArrayLike,
    R: ArrayLike | None = ...,
    k: int = ...,
    block_size: int = ...,
    return_indices: Literal[False] = ...,
    backend: BackendLike = ...,
) -> torch.Tensor: ...


@overload
def knn_distances(
    Q: ArrayLike,
    R: ArrayLike | None,
    k: int,
    block_size: int,
    return_indices: Literal[True],
    backend: BackendLike = ...,
) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def knn_distances(
    Q: ArrayLike,
    R: ArrayLike | None = ...,
    k: int = ...,
    block_size: int = ...,
    *,
    return_indices: Literal[True],
    backend: BackendLike = ...,
) -> tuple[torch.Tensor, torch.Tensor]: ...


def knn_distances(
    Q: ArrayLike,
    R: ArrayLike | None = None,
    k: int = 20,
    block_size: int = 2048,
    return_indices: bool = False,
    backend: BackendLike = "exact",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Distances r_1 <= ... <= r_k from each row of Q to its k nearest rows of R (Euclidean), shape (n_Q, k).

    Returns a torch tensor on Q's device (numpy input becomes a CPU tensor); with ``return_indices``
    also the int64 indices into R (or into Q when R is None, self excluded). ``backend``: "exact" (tiled
    brute force), "faiss-flat", "faiss-ivf", "faiss-hnsw" or a ``KnnBackend`` with index options.
    """
    k = check_positive_int(k, "k")
    block_size = check_positive_int(block_size, "block_size")
    spec = resolve_backend(backend)
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
    dist, idx = knn_core(q, None if self_query else r, k, block_size, spec)
    return (dist, idx) if return_indices else dist


def knn_core(
    q: torch.Tensor, r: torch.Tensor | None, k: int, block_size: int, backend: BackendLike = "exact"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unchecked k-NN on validated tensors (same dtype/device); r=None queries q against itself."""
    spec = resolve_backend(backend)
    with torch.no_grad():
        if spec.name == "exact":
            idx = exact_neighbours(q.detach(), None if r is None else r.detach(), k, block_size)
        else:
            from dimcollapse.diagnostics.knn_backends import faiss_neighbours

            idx = faiss_neighbours(q.detach(), None if r is None else r.detach(), k, spec)
    return exact_distances(q, q if r is None else r, idx)


def exact_distances(q: torch.Tensor, r: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """||q_i - r_idx[i,j]|| from the difference vectors (differentiable), sorted ascending per row."""
    k, d = idx.shape[1], q.shape[1]
    rows = max(1, _GATHER_ELEMS // max(1, k * d))
    dists, idxs = [], []
    for start in range(0, q.shape[0], rows):
        ib = idx[start : start + rows]
        diff = q[start : start + rows, None, :] - r[ib]
        sq = (diff * diff).sum(-1)
        # sqrt has an infinite derivative at 0: differentiate through a clamped copy, keep exact zeros.
        dist = torch.where(sq > 0, sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt(), torch.zeros_like(sq))
        dist, order = torch.sort(dist, dim=1)
        dists.append(dist)
        idxs.append(torch.gather(ib, 1, order))
    return torch.cat(dists), torch.cat(idxs)


def exact_neighbours(q: torch.Tensor, r: torch.Tensor | None, k: int, block_size: int) -> torch.Tensor:
    """Indices (n_q, k) of the k rows of r with the smallest |r|^2 - 2 q.r, tile by tile (see module doc)."""
    self_query = r is None
    ref = q if r is None else r
    ref_aug = torch.cat([-2.0 * ref, (ref * ref).sum(1, keepdim=True)], dim=1)  # rows [-2 r, |r|^2]
    cols = max(TILE_COLS, k + 1)
    rows = min(block_size, TILE_ROWS)
    shape = (min(rows, q.shape[0]), min(cols, ref.shape[0]))
    tile = torch.empty(shape, dtype=q.dtype, device=q.device)
    ones = torch.ones((shape[0], 1), dtype=q.dtype, device=q.device)
    out = []
    for start in range(0, q.shape[0], rows):
        qb = q[start : start + rows]
        q_aug = torch.cat([qb, ones[: qb.shape[0]]], dim=1)  # rows [q, 1]: q_aug . r_aug = |r|^2 - 2 q.r
        out.append(_block_neighbours(q_aug, ref_aug, k, start if self_query else None, cols, tile))
    return torch.cat(out)


def _scores(out: torch.Tensor, q_aug: torch.Tensor, r_aug: torch.Tensor) -> None:
    """out = q_aug r_aug^T: numpy's BLAS on CPU for float32/64 (faster than torch's here), else torch."""
    if out.device.type == "cpu" and out.dtype in (torch.float32, torch.float64):
        np.matmul(q_aug.detach().numpy(), r_aug.detach().numpy().T, out=out.numpy())
    else:
        torch.mm(q_aug, r_aug.T, out=out)


def _block_neighbours(
    q_aug: torch.Tensor,
    ref_aug: torch.Tensor,
    k: int,
    self_offset: int | None,
    cols: int,
    tile_buf: torch.Tensor,
) -> torch.Tensor:
    """k best reference indices for one query block, selecting while the reference tiles are computed.

    ``cols >= k + 1``, so the first tile holds k candidates per query even with the query's own row excluded.
    The first tile's k best set each query's bound tau; a later tile only yields its entries below tau
    (``_below_bound``), merged with the k best so far by one small ``topk``, which tightens tau.
    """
    m, n_ref = q_aug.shape[0], ref_aug.shape[0]
    best: tuple[torch.Tensor, torch.Tensor] | None = None
    for c0 in range(0, n_ref, cols):
        width = min(cols, n_ref - c0)
        tile = tile_buf[:m, :width]
        _scores(tile, q_aug, ref_aug[c0 : c0 + width])
        if self_offset is not None:
            _mask_self(tile, self_offset, c0)
        if best is None:
            vals, idx = torch.topk(tile, k, dim=1, largest=False, sorted=False)
            if width == n_ref:  # one tile holds the whole reference set: nothing to merge
                return idx
            best = (vals, idx)
            continue
        tau = best[0].amax(dim=1)
        rows, idx, vals = _below_bound(tile, tau)
        if rows.numel():
            best = _merge(best, rows, idx + c0, vals, k)
    assert best is not None
    return best[1]


def _mask_self(tile: torch.Tensor, q0: int, c0: int) -> None:
    """Set +inf where query row q0 + i meets reference row c0 + j with q0 + i == c0 + j (its own row)."""
    lo, hi = max(q0, c0), min(q0 + tile.shape[0], c0 + tile.shape[1])
    if lo < hi:
        g = torch.arange(lo, hi, device=tile.device)
        tile[g - q0, g - c0] = float("inf")


def _below_bound(tile: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, column, value) of the tile entries strictly below their row's bound tau, in row order.

    Columns are first summarised in groups of ``_GROUP`` by their minimum (one vectorised pass); only the
    few groups whose minimum is below tau are looked at entry by entry, so the full-size compare and
    ``nonzero`` run over 1/_GROUP of the tile.
    """
    m, w = tile.shape
    if w % _GROUP or w < 4 * _GROUP:
        rows, cols = (tile < tau[:, None]).nonzero(as_tuple=True)
        return rows, cols, tile[rows, cols]
    stride, row_step = w // _GROUP, tile.stride(0)
    group_min = tile.view(m, _GROUP, stride).amin(dim=1)  # entry j: min of columns j, j + stride, ...
    hit_rows, hit_j = (group_min < tau[:, None]).nonzero(as_tuple=True)
    flat = tile.as_strided((row_step * m,), (1,))  # the tile's rows in its buffer, one flat index
    offsets = stride * torch.arange(_GROUP, device=tile.device)
    vals = flat[(hit_rows * row_step + hit_j)[:, None] + offsets]  # (hits, _GROUP) entries of hit groups
    h, g = (vals < tau[hit_rows, None]).nonzero(as_tuple=True)
    return hit_rows[h], hit_j[h] + offsets[g], vals[h, g]


def _merge(
    best: tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor, idx: torch.Tensor, vals: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best of the current (m, k) best and new candidates (rows in ascending order), per row."""
    best_vals, best_idx = best
    m = best_vals.shape[0]
    counts = torch.bincount(rows, minlength=m)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(rows.numel(), device=rows.device) - starts[rows]
    width = int(counts.max())
    new_vals = torch.full((m, width), float("inf"), dtype=best_vals.dtype, device=best_vals.device)
    new_idx = torch.zeros((m, width), dtype=best_idx.dtype, device=best_idx.device)
    new_vals[rows, pos] = vals
    new_idx[rows, pos] = idx
    all_vals = torch.cat([best_vals, new_vals], dim=1)
    vals_k, j = torch.topk(all_vals, k, dim=1, largest=False, sorted=False)
    return vals_k, torch.gather(torch.cat([best_idx, new_idx], dim=1), 1, j)


def sample_exact_distances(
    z: torch.Tensor, rows: torch.Tensor, k: int, block_size: int = 2048
) -> torch.Tensor:
    """Exact sorted distances (len(rows), k) from z[rows] to their k nearest other rows of z (not self)."""
    idx = exact_neighbours(z[rows], z, k + 1, block_size)
    dist, idx = exact_distances(z[rows], z, idx)
    own = idx == rows[:, None]
    own[~own.any(1), -1] = True  # self not among them (duplicates at distance 0): drop the farthest
    own &= torch.cumsum(own.int(), 1) == 1
    return dist[~own].view(len(rows), k)


def neighbour_recall(found: torch.Tensor, exact: torch.Tensor, rtol: float = 1e-6) -> float:
    """Recall@k = mean over queries of |{found r_j <= exact r_k}| / k (tie-proof: compares distances)."""
    bound = exact[:, -1:] * (1.0 + rtol)
    return float((found <= bound).double().mean())
