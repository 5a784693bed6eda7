"""Selecting the k smallest entries per row (or per column) of CPU score tiles as they are computed.

A tile (numpy, float32/64) holds ranking scores (squared distances, possibly minus a row constant). Every
query keeps its k best (value, index) so far and a bound tau, its current k-th best (``Best``).
``first_bound`` gives tau from the first tile without sorting it; ``below_bound`` (per row) and
``below_bound_cols`` (per column, for a tile that also serves as its own transpose) return only the
entries below tau: the tile is summarised by the minimum of each group of ``GROUP`` entries (one
vectorised pass), and only the groups whose minimum passes are read entry by entry. ``Best.add`` folds
the candidates into the k best by one ``argpartition`` over the rows that have candidates.

numpy rather than torch: the flat compare-and-``flatnonzero`` steps and the per-call overhead are 3-6x
lower there for tiles of this size (measured on a 1,024 x 1,024 tile: 0.09 ms vs 0.33 ms to find the
groups below tau); the group minima use torch's ``amin``, about twice as fast as numpy's reduction.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.lib.stride_tricks import as_strided

GROUP = 16  # tile entries summarised by one minimum before entries are tested one by one


def _group_min_rows(tile: np.ndarray, s: int) -> np.ndarray:
    """(m, s): entry (i, j) = min of tile[i, j], tile[i, j + s], ... (GROUP columns s apart)."""
    m = tile.shape[0]
    return torch.from_numpy(tile).view(m, GROUP, s).amin(dim=1).numpy()


def _group_min_cols(tile: np.ndarray, s: int) -> np.ndarray:
    """(s, w): entry (i, c) = min of tile[i, c], tile[i + s, c], ... (GROUP rows s apart)."""
    w = tile.shape[1]
    return torch.from_numpy(tile).view(GROUP, s, w).amin(dim=0).numpy()


def first_bound(tile: np.ndarray, k: int) -> np.ndarray:
    """A per-row upper bound on the k-th smallest entry that at least k entries of the tile reach.

    The k-th smallest of the column-group minima (k groups each hold an entry at most that large), or,
    when the tile has fewer than k groups, the k-th smallest entry itself.
    """
    w = tile.shape[1]
    if w % GROUP == 0 and w // GROUP >= k:
        return np.partition(_group_min_rows(tile, w // GROUP), k - 1, axis=1)[:, k - 1]
    return np.partition(tile, k - 1, axis=1)[:, k - 1]


def below_bound(
    tile: np.ndarray, tau: np.ndarray, inclusive: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, value) of the entries below their row's bound tau (or equal, if ``inclusive``),
    in ascending row order. Column groups: j, j + w/GROUP, ... (w divisible by GROUP)."""
    passes = np.less_equal if inclusive else np.less
    m, w = tile.shape
    if w % GROUP or w < 4 * GROUP:
        rows, cols = np.divmod(np.flatnonzero(passes(tile, tau[:, None])), w)
        return rows, cols, tile[rows, cols]
    s = w // GROUP
    hit_rows, hit_j = np.divmod(np.flatnonzero(passes(_group_min_rows(tile, s), tau[:, None])), s)
    rs, es = tile.strides
    groups = as_strided(tile, (m, s, GROUP), (rs, es, s * es), writeable=False)
    vals = groups[hit_rows, hit_j]  # (hits, GROUP): the entries of the groups that passed
    flat = np.flatnonzero(passes(vals, tau[hit_rows, None]))
    h, g = np.divmod(flat, GROUP)
    return hit_rows[h], hit_j[h] + g * s, vals.ravel()[flat]


def below_bound_cols(tile: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(column, row, value) of the entries strictly below their column's bound tau, in ascending column
    order: the tile read as its transpose, without copying it. Row groups: i, i + m/GROUP, ..."""
    m, w = tile.shape
    if m % GROUP or m < 4 * GROUP:
        cols, rows = np.divmod(np.flatnonzero(np.less(tile.T, tau[:, None])), m)
        return cols, rows, tile[rows, cols]
    s = m // GROUP
    hits = np.flatnonzero(np.less(_group_min_cols(tile, s).T, tau[:, None]))  # C order: by column
    hit_cols, hit_i = np.divmod(hits, s)
    rs, es = tile.strides
    groups = as_strided(
        tile, (w, s, GROUP), (es, rs, s * rs), writeable=False
    )  # [c, i, o] = tile[i + o s, c]
    vals = groups[hit_cols, hit_i]
    flat = np.flatnonzero(np.less(vals, tau[hit_cols, None]))
    h, g = np.divmod(flat, GROUP)
    return hit_cols[h], hit_i[h] + g * s, vals.ravel()[flat]


class Best:
    """Every query's k best (score, index) and its bound tau = its k-th best score (numpy)."""

    def __init__(self, n: int, k: int, dtype: np.dtype) -> None:
        self.k = k
        self.vals = np.full((n, k), np.inf, dtype=dtype)
        self.idx = np.zeros((n, k), dtype=np.int64)
        self.tau = np.full(n, np.inf, dtype=dtype)

    def add(self, r0: int, rows: np.ndarray, idx: np.ndarray, vals: np.ndarray) -> None:
        """Merge candidates (rows relative to r0, grouped in ascending order) and tighten their tau."""
        n, k = rows.size, self.k
        if not n:
            return
        starts = np.flatnonzero(rows[1:] != rows[:-1]) + 1
        starts = np.concatenate([np.zeros(1, dtype=starts.dtype), starts])
        counts = np.diff(starts, append=n)
        touched = rows[starts] + r0
        u = starts.size
        which = np.repeat(np.arange(u), counts)
        slot = np.arange(k, n + k) - np.repeat(starts, counts)  # columns k, k + 1, ... of each row
        all_vals = np.full((u, k + int(counts.max())), np.inf, dtype=self.vals.dtype)
        all_idx = np.zeros(all_vals.shape, dtype=np.int64)
        all_vals[:, :k], all_idx[:, :k] = self.vals[touched], self.idx[touched]
        all_vals[which, slot], all_idx[which, slot] = vals, idx
        keep = np.argpartition(all_vals, k - 1, axis=1)[:, :k]
        at = np.arange(u)[:, None]
        new_vals = all_vals[at, keep]
        self.vals[touched], self.idx[touched] = new_vals, all_idx[at, keep]
        self.tau[touched] = new_vals.max(axis=1)
