"""k-nearest-neighbour distances in torch, tiled: no N x N (or block x N) distance matrix is ever stored.

Exact search (``backend="exact"``), queries against a reference set: queries in blocks of ``TILE_ROWS``,
the reference set in tiles of ``TILE_COLS`` rows; each tile's ranking scores |r|^2 - 2 q.r (the squared
distance minus the row-constant |q|^2: one GEMM of [q, 1] with [-2 r, |r|^2], numpy's BLAS on CPU) go
into one reused buffer and neighbours are selected as the tiles are computed (``knn_select``: a bound
from the first tile, then only the entries below it, found through group minima, are merged). A set
queried against itself (R is None) computes each pair once (``knn_self``: the upper triangle of square
tiles, each read along its rows and down its columns), half the products. On CPU the tiles run on
torch.get_num_threads() worker threads, each with one-threaded BLAS and torch (``knn_workers``).
Other backends (faiss, see ``knn_backends``) only choose the neighbours. Either way the k distances are
then recomputed exactly as ||q - r|| from the difference vectors, so duplicates give exactly 0 and the
result is differentiable in both Q and R. When R is None each query's own row is excluded (other rows
identical to it are still neighbours, at distance 0).
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np
import torch

from dimcollapse.diagnostics.engine import knn_select as sel
from dimcollapse.diagnostics.engine.inputs import ArrayLike, check_positive_int, matrix
from dimcollapse.diagnostics.engine.knn_backends import BackendLike, resolve_backend
from dimcollapse.diagnostics.engine.knn_self import blocks_for, self_neighbours
from dimcollapse.diagnostics.engine.knn_workers import TileBuffers, cpu_workers, run_all
from dimcollapse.errors import InputError

_GATHER_ELEMS = 2**24  # cap on block * k * D elements of the exact recomputation (with autograd)
_GATHER_CACHE = 2**18  # gathered elements per chunk without autograd: one reused 1 MB float32 buffer
TILE_COLS = 2048  # reference rows per tile of the exact search
TILE_ROWS = 1024  # query rows per tile: an 8 MB float32 tile; fewer, larger tiles cut per-tile overhead
SELF_TILE = 1024  # rows per block of the symmetric self-search (knn_self): 4 MB float32 tiles


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
            from dimcollapse.diagnostics.engine.knn_backends import faiss_neighbours

            idx = faiss_neighbours(q.detach(), None if r is None else r.detach(), k, spec)
    return exact_distances(q, q if r is None else r, idx)


def exact_distances(q: torch.Tensor, r: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """||q_i - r_idx[i,j]|| from the difference vectors (differentiable), sorted ascending per row."""
    if not (torch.is_grad_enabled() and (q.requires_grad or r.requires_grad)):
        dist = _distances_no_grad(q, r, idx)
        dist, order = torch.sort(dist, dim=1)
        return dist, torch.gather(idx, 1, order)
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


def _distances_no_grad(q: torch.Tensor, r: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """||q_i - r_idx[i,j]|| unsorted, through one reused cache-sized buffer of gathered rows (no autograd)."""
    n, k = idx.shape
    d = q.shape[1]
    rows = max(1, _GATHER_CACHE // max(1, k * d))
    out = torch.empty((n, k), dtype=q.dtype, device=q.device)
    buf = torch.empty((min(rows, n) * k, d), dtype=q.dtype, device=q.device)
    with torch.no_grad():
        for start in range(0, n, rows):
            ib = idx[start : start + rows]
            gathered = buf[: ib.numel()]
            torch.index_select(r, 0, ib.reshape(-1), out=gathered)
            diff = gathered.view(ib.shape[0], k, d)
            diff.sub_(q[start : start + rows, None, :])
            torch.linalg.vector_norm(diff, dim=-1, out=out[start : start + rows])
    return out


def exact_neighbours(q: torch.Tensor, r: torch.Tensor | None, k: int, block_size: int) -> torch.Tensor:
    """Indices (n_q, k) of the k rows of r (r None: of q, own row excluded) nearest each row of q, by tiles:
    the bounded numpy search on CPU (symmetric for a set against itself), a topk merge on other devices."""
    if q.device.type != "cpu":
        return _device_neighbours(q, r, k, block_size)
    dtype = q.dtype if q.dtype in (torch.float32, torch.float64) else torch.float32
    x = q.detach().to(dtype).numpy()
    y = None if r is None else r.detach().to(dtype).numpy()
    with cpu_workers() as workers:
        blocks = blocks_for(x.shape[0], min(block_size, SELF_TILE), k) if y is None else None
        if blocks is not None:
            return torch.from_numpy(self_neighbours(x, k, blocks, workers))
        return torch.from_numpy(_cpu_neighbours(x, y, k, block_size, workers))


def _cpu_neighbours(
    x: np.ndarray, y: np.ndarray | None, k: int, block_size: int, workers: int = 1
) -> np.ndarray:
    """Query blocks of ``TILE_ROWS`` rows of x (independent tasks on ``workers`` threads) against tiles of
    ``TILE_COLS`` rows of y (None: of x, own row masked); scores |r|^2 - 2 q.r from one GEMM of [q, 1] with
    [-2 r, |r|^2] into a reused buffer. The first tile gives each query its bound (``cols >= k + 1``: k
    candidates even without its own row); every tile then yields only its entries below the bound."""
    ref = x if y is None else y
    (n_q, d), n_ref = x.shape, ref.shape[0]
    ref_aug = np.empty((n_ref, d + 1), dtype=x.dtype)
    np.multiply(ref, -2.0, out=ref_aug[:, :d])
    ref_aug[:, d] = np.einsum("ij,ij->i", ref, ref)
    cols, rows = max(TILE_COLS, k + 1), min(block_size, TILE_ROWS)
    tiles = TileBuffers((min(rows, n_q), min(cols, n_ref)), x.dtype)
    out = np.empty((n_q, k), dtype=np.int64)

    def query_block(q0: int) -> None:
        m = min(rows, n_q - q0)
        q_aug = np.ones((m, d + 1), dtype=x.dtype)
        q_aug[:, :d] = x[q0 : q0 + m]  # rows [q, 1]: q_aug . r_aug = |r|^2 - 2 q.r
        best = sel.Best(m, k, x.dtype)
        for c0 in range(0, n_ref, cols):
            tile = tiles.get(m, min(cols, n_ref - c0))
            _scores(tile, q_aug, ref_aug[c0 : c0 + tile.shape[1]])
            if y is None and c0 < q0 + m and q0 < c0 + tile.shape[1]:  # the block's own rows are in this tile
                lo, hi = max(q0, c0), min(q0 + m, c0 + tile.shape[1])
                np.fill_diagonal(tile[lo - q0 : hi - q0, lo - c0 : hi - c0], np.inf)
            first = c0 == 0
            tau = sel.first_bound(tile, k) if first else best.tau
            hit_rows, hit_cols, vals = sel.below_bound(tile, tau, inclusive=first)
            best.add(0, hit_rows, hit_cols + c0, vals)
        out[q0 : q0 + m] = best.idx

    run_all(query_block, range(0, n_q, rows), workers)
    return out


def _scores(out: np.ndarray, q_aug: np.ndarray, r_aug: np.ndarray) -> None:
    """out = q_aug r_aug^T (one BLAS GEMM into the reused tile)."""
    np.matmul(q_aug, r_aug.T, out=out)


def _device_neighbours(q: torch.Tensor, r: torch.Tensor | None, k: int, block_size: int) -> torch.Tensor:
    """The k nearest by tiles and a ``topk`` merge per tile, in torch on q's device (GPUs: topk is cheap)."""
    ref = q if r is None else r
    ref_aug = torch.cat([-2.0 * ref, (ref * ref).sum(1, keepdim=True)], dim=1)  # rows [-2 r, |r|^2]
    cols, rows = max(TILE_COLS, k + 1), min(block_size, TILE_ROWS)
    out = []
    for q0 in range(0, q.shape[0], rows):
        qb = q[q0 : q0 + rows]
        q_aug = torch.cat([qb, torch.ones_like(qb[:, :1])], dim=1)
        best: tuple[torch.Tensor, torch.Tensor] | None = None
        for c0 in range(0, ref.shape[0], cols):
            tile = q_aug @ ref_aug[c0 : c0 + cols].T
            if r is None and c0 < q0 + tile.shape[0] and q0 < c0 + tile.shape[1]:
                lo, hi = max(q0, c0), min(q0 + tile.shape[0], c0 + tile.shape[1])
                tile[lo - q0 : hi - q0, lo - c0 : hi - c0].diagonal().fill_(float("inf"))
            if best is not None:
                tile = torch.cat([best[0], tile], dim=1)
            vals, j = torch.topk(tile, min(k, tile.shape[1]), dim=1, largest=False, sorted=False)
            idx = (
                j + c0
                if best is None
                else torch.where(j < k, best[1].gather(1, j.clamp_max(k - 1)), j - k + c0)
            )
            best = (vals, idx)
        assert best is not None
        out.append(best[1])
    return torch.cat(out)


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
