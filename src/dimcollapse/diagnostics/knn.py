"""k-nearest-neighbour distances in torch, tiled: no N x N (or block x N) distance matrix is ever stored.

Exact search (``backend="exact"``): per block of queries, the reference set is walked in tiles of
``TILE_COLS`` rows; each tile's ranking scores |r|^2 - 2 q.r (the squared distance minus the row-constant
|q|^2, one fused ``addmm``) are written into one reused tile buffer and neighbours are selected as the
tiles are computed: the first tile's k best give every query a bound tau, and later tiles only keep
the entries below tau (a compare and a ``nonzero``, much cheaper than a ``topk`` of the tile); when the
candidates pile up they are cut to the k best, which tightens tau. Other backends (faiss, see
``knn_backends``) only choose the neighbours. Either way the k distances are then recomputed exactly as
||q - r|| from the difference vectors, so duplicates give exactly 0 and the result is differentiable in
both Q and R. When R is None the set is queried against itself and each query's own row is excluded
(other rows identical to it are still neighbours, at distance 0).
"""

from __future__ import annotations

from typing import Literal, overload

import torch

from dimcollapse.diagnostics._validate import ArrayLike, check_positive_int, matrix
from dimcollapse.diagnostics.knn_backends import BackendLike, resolve_backend
from dimcollapse.errors import InputError

_GATHER_ELEMS = 2**24  # cap on block * k * D elements of the exact recomputation
TILE_COLS = 4096  # reference rows per tile of the exact search
_KEEP_FACTOR = 4  # cut the candidates to the k best per row once a block holds 4 k per row


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
    r_sq = (ref * ref).sum(1)
    cols = max(TILE_COLS, k + 1)
    shape = (min(block_size, q.shape[0]), min(cols, ref.shape[0]))
    tile = torch.empty(shape, dtype=q.dtype, device=q.device)
    out = []
    for start in range(0, q.shape[0], block_size):
        qb = q[start : start + block_size]
        out.append(_block_neighbours(qb, ref, r_sq, k, start if self_query else None, cols, tile))
    return torch.cat(out)


def _block_neighbours(
    qb: torch.Tensor,
    ref: torch.Tensor,
    r_sq: torch.Tensor,
    k: int,
    self_offset: int | None,
    cols: int,
    tile_buf: torch.Tensor,
) -> torch.Tensor:
    """k best reference indices for one query block, selecting while the reference tiles are computed.

    ``cols >= k + 1``, so the first tile holds k candidates per query even with the query's own row excluded.
    """
    m, n_ref = qb.shape[0], ref.shape[0]
    cand: _Candidates | None = None
    for c0 in range(0, n_ref, cols):
        width = min(cols, n_ref - c0)
        tile = tile_buf[:m, :width]
        torch.addmm(r_sq[None, c0 : c0 + width], qb, ref[c0 : c0 + width].T, beta=1.0, alpha=-2.0, out=tile)
        if self_offset is not None:
            _mask_self(tile, self_offset, c0)
        if cand is None:
            vals, idx = torch.topk(tile, k, dim=1, largest=False, sorted=False)
            if width == n_ref:  # one tile holds the whole reference set: nothing to merge
                return idx
            cand = _Candidates(vals, idx)
        else:
            cand.add_below_bound(tile, c0)
    assert cand is not None
    return cand.best()


def _mask_self(tile: torch.Tensor, q0: int, c0: int) -> None:
    """Set +inf where query row q0 + i meets reference row c0 + j with q0 + i == c0 + j (its own row)."""
    lo, hi = max(q0, c0), min(q0 + tile.shape[0], c0 + tile.shape[1])
    if lo < hi:
        g = torch.arange(lo, hi, device=tile.device)
        tile[g - q0, g - c0] = float("inf")


class _Candidates:
    """Per-query candidate neighbours (row, score, index) below a per-row bound tau (the k-th best so far)."""

    def __init__(self, vals: torch.Tensor, idx: torch.Tensor) -> None:
        """Start from k candidates per row (m, k); tau is each row's worst of them."""
        self.m, self.k = vals.shape
        rows = torch.arange(self.m, device=vals.device).repeat_interleave(self.k)
        self.parts = [(rows, vals.reshape(-1), idx.reshape(-1))]
        self.count = rows.numel()
        self.tau = vals.max(dim=1).values

    def add_below_bound(self, tile: torch.Tensor, c0: int) -> None:
        """Keep the entries of ``tile`` (reference columns from c0) strictly below their row's bound."""
        rows, cols = (tile < self.tau[:, None]).nonzero(as_tuple=True)
        if rows.numel():
            self.parts.append((rows, tile[rows, cols], cols + c0))
            self.count += rows.numel()
            if self.count > _KEEP_FACTOR * self.k * self.m:
                self._cut()

    def _cut(self) -> torch.Tensor:
        """Reduce to the k best per row (ties in any order), tighten tau; returns their indices (m, k)."""
        rows, vals, idx = (torch.cat(p) for p in zip(*self.parts, strict=True))
        by_val = torch.argsort(vals, stable=True)
        perm = by_val[torch.argsort(rows[by_val], stable=True)]  # grouped by row, ascending within a row
        counts = torch.bincount(rows, minlength=self.m)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(perm.numel(), device=perm.device) - starts[rows[perm]]
        keep = perm[rank < self.k]  # exactly k per row (every row started with k), in row order
        kept_vals = vals[keep].view(self.m, self.k)
        kept_idx = idx[keep].view(self.m, self.k)
        self.parts = [(rows[keep], kept_vals.reshape(-1), kept_idx.reshape(-1))]
        self.count = keep.numel()
        self.tau = kept_vals[:, -1]
        return kept_idx

    def best(self) -> torch.Tensor:
        """Indices (m, k) of the k best candidates of every row."""
        return self._cut()


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
