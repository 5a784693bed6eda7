"""Exact k nearest neighbours of a set among its own rows, each pair's distance computed once.

The N x N squared distances |x_i|^2 + |x_j|^2 - 2 x_i.x_j are symmetric, so only the tiles (I, J) with
I <= J of square row blocks are computed, each by one GEMM of [x_I, |x_I|^2, 1] with [-2 x_J, 1, |x_J|^2]
(BLAS, on CPU numpy arrays). A diagonal tile serves the rows of its block (own row masked) and
gives them their first bound; an off-diagonal tile serves the rows of block I along its rows and the rows
of block J down its columns. That is half the products of querying the set against itself; selection is
the bounded one of ``knn_select``. Blocks are ``tile`` rows (a multiple of ``GROUP``), the last one between
tile / 2 and 3 tile / 2 rows; the column side is padded to a multiple of ``GROUP`` with rows whose score
is the largest float, so every tile is read in groups.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from dimcollapse.diagnostics.engine import knn_select as sel
from dimcollapse.diagnostics.engine.knn_workers import TileBuffers, run_all


def blocks_for(n: int, tile: int, k: int) -> list[tuple[int, int]] | None:
    """Row blocks (start, stop) of the symmetric search, or None when it does not apply (one block, or a
    block too small to hold k + 1 rows)."""
    t = max(sel.GROUP, tile // sel.GROUP * sel.GROUP)
    if n < 2 * t or t // 2 < k + 1:
        return None
    starts = list(range(0, n, t))
    if n - starts[-1] < t // 2:
        starts.pop()
    return list(zip(starts, [*starts[1:], n], strict=True))


def _sides(x: np.ndarray, n_pad: int) -> tuple[np.ndarray, np.ndarray]:
    """left = [x, |x|^2, 1] (N, D + 2), right = [-2 x, 1, |x|^2] padded to n_pad rows [0, 0, max float]."""
    n, d = x.shape
    sq = np.einsum("ij,ij->i", x, x)
    left = np.empty((n, d + 2), dtype=x.dtype)
    left[:, :d] = x
    left[:, d] = sq
    left[:, d + 1] = 1.0
    right = np.zeros((n_pad, d + 2), dtype=x.dtype)
    np.multiply(x, -2.0, out=right[:n, :d])
    right[:n, d] = 1.0
    right[:n, d + 1] = sq
    right[n:, d + 1] = np.finfo(x.dtype).max  # padding columns: the largest float, never selected
    return left, right


def _scores(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """out = a b^T (one BLAS GEMM)."""
    np.matmul(a, b.T, out=out)


def spatial_order(x: np.ndarray, clusters: int, iters: int = 8, per_cluster: int = 64) -> np.ndarray:
    """A row order that puts nearby rows together: rows sorted by their nearest of ``clusters`` centres,
    from ``iters`` Lloyd iterations of k-means on a random sample of per_cluster * clusters rows (seed 0)."""
    rng = np.random.default_rng(0)
    n = x.shape[0]
    sample = x[np.sort(rng.choice(n, min(n, per_cluster * clusters), replace=False))]
    centres = sample[rng.choice(sample.shape[0], min(clusters, sample.shape[0]), replace=False)]
    for _ in range(iters):
        label = _nearest(sample, centres)
        member = (label[None, :] == np.arange(centres.shape[0])[:, None]).astype(x.dtype)  # one-hot
        counts = member.sum(axis=1)
        sums = member @ sample
        centres = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres).astype(
            x.dtype
        )
    return np.argsort(_nearest(x, centres), kind="stable")


def _nearest(x: np.ndarray, centres: np.ndarray, rows: int = 65536) -> np.ndarray:
    """Index of each row's nearest centre (argmin of |c|^2 - 2 x.c), in chunks of ``rows`` rows."""
    c2 = np.einsum("ij,ij->i", centres, centres)
    return np.concatenate(
        [np.argmin(c2 - 2.0 * (x[i : i + rows] @ centres.T), axis=1) for i in range(0, len(x), rows)]
    )


def self_neighbours(x: np.ndarray, k: int, blocks: list[tuple[int, int]], workers: int = 1) -> np.ndarray:
    """Indices (N, k) of each row's k nearest other rows of x, over the tiles I <= J of ``blocks``.

    The rows are first put in ``spatial_order`` (one k-means cluster per block), so that a block's own tile
    already holds most of its rows' neighbours: the first bounds are tight and later tiles yield few
    candidates (measured at 20,000 x 64: 70 instead of 114 candidates per row, 25% less time).
    """
    order = spatial_order(x, len(blocks))
    found = _sorted_neighbours(x[order], k, blocks, workers)
    out = np.empty_like(found)
    out[order] = order[found]
    return out


def _sorted_neighbours(x: np.ndarray, k: int, blocks: list[tuple[int, int]], workers: int) -> np.ndarray:
    """``self_neighbours`` of rows already in their search order: the diagonal tiles (independent), then the
    pairs I < J, on ``workers`` threads; a block's k best are merged under its lock, its bound is read
    without one (a stale bound is larger: it only lets a few more candidates through)."""
    n = x.shape[0]
    n_pad = math.ceil(n / sel.GROUP) * sel.GROUP
    left, right = _sides(x, n_pad)
    side = max(b - a for a, b in blocks)
    tiles = TileBuffers((side, side + sel.GROUP), x.dtype)
    best = sel.Best(n, k, x.dtype)
    locks = [threading.Lock() for _ in blocks]

    def diagonal(b: int) -> None:
        a0, a1 = blocks[b]
        c1 = n_pad if a1 == n else a1
        tile = tiles.get(a1 - a0, c1 - a0)
        _scores(tile, left[a0:a1], right[a0:c1])
        np.fill_diagonal(tile, np.inf)  # a row is not its own neighbour
        rows, cols, vals = sel.below_bound(tile, sel.first_bound(tile, k), inclusive=True)
        best.add(a0, rows, cols + a0, vals)

    def pair(bc: tuple[int, int]) -> None:
        (a0, a1), (c0, c1) = blocks[bc[0]], blocks[bc[1]]
        c1p = n_pad if c1 == n else c1
        tile = tiles.get(a1 - a0, c1p - c0)
        _scores(tile, left[a0:a1], right[c0:c1p])
        rows, cols, vals = sel.below_bound(tile, best.tau[a0:a1])
        with locks[bc[0]]:
            best.add(a0, rows, cols + c0, vals)
        cols, rows, vals = sel.below_bound_cols(tile[:, : c1 - c0], best.tau[c0:c1])
        with locks[bc[1]]:
            best.add(c0, cols, rows + a0, vals)

    run_all(diagonal, range(len(blocks)), workers)
    run_all(pair, [(b, c) for b in range(len(blocks)) for c in range(b + 1, len(blocks))], workers)
    return best.idx
