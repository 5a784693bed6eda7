"""Running float64 sums of row blocks for the streamed covariance, merged exactly.

A segment holds G = sum (x - s)(x - s)^T and S = sum (x - s) of blocks that share one shift s; closed
segments merge into (n, mean, M2) by the pairwise update of Chan, Golub & LeVeque (1979); a lane folds
its blocks in order and opens a new segment when a block's mean drifts farther than its spread.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from dimcollapse.diagnostics.engine.moments import merge_moments_into

_MAX_LANES = 8  # running sums folded independently (one worker thread each at a time)
_LANE_BYTES = 2**27  # at most this many bytes of lane sums (D x D float64 each)


class Segment:
    """Sums over consecutive blocks that share one shift s: rows n, G = sum (x-s)(x-s)^T, S = sum (x-s)."""

    def __init__(self, shift: torch.Tensor | None = None) -> None:
        self.n = 0
        self.shift = shift
        self.gram: torch.Tensor | None = None
        self.sums: torch.Tensor | None = None

    def add(self, gram: torch.Tensor, sums: torch.Tensor | None, rows: int) -> None:
        """Add one block's Gram product and column sums (copied on first use: ``gram`` may be a buffer)."""
        if self.gram is None:
            self.gram = gram.clone()
            self.sums = None if sums is None else sums.clone()
        else:
            self.gram += gram
            if sums is not None and self.sums is not None:
                self.sums += sums
        self.n += rows

    def moments(self, center: bool) -> tuple[int, torch.Tensor | None, torch.Tensor]:
        """(n, mean, M2) of the rows: mean = s + S/n, M2 = G - S S^T / n (G itself when uncentred)."""
        assert self.gram is not None
        if not center or self.sums is None or self.shift is None:
            return self.n, None, self.gram
        return self.n, self.shift + self.sums / self.n, self.gram - torch.outer(self.sums, self.sums) / self.n


class Moments:
    """Merged state of closed segments: rows n, mean (None uncentred), M2 = sum (x - mean)(x - mean)^T."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def merge(self, n: int, mean: torch.Tensor | None, m2: torch.Tensor) -> None:
        """Pairwise update (Chan, Golub & LeVeque): M2 += M2' + delta delta^T n n' / (n + n')."""
        if self.m2 is None:
            self.m2, self.mean = m2.clone(), mean
        else:
            self.mean = merge_moments_into(self.m2, self.n, self.mean, n, mean, m2)
        self.n += n


class Lane:
    """One running sum of blocks, folded in order: the open segment plus the merged closed ones.

    A block whose mean lies farther from the segment's shift than its own spread closes the segment and
    is re-centred on its own mean (``redo``).
    """

    def __init__(self, center: bool) -> None:
        self.center = center
        self.seg = Segment()
        self.closed = Moments()

    @property
    def n(self) -> int:
        """Rows folded into this lane."""
        return self.closed.n + self.seg.n

    def fold(
        self,
        gram: torch.Tensor,
        sums: torch.Tensor,
        m: int,
        redo: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    ) -> bool:
        """Add one block's Gram product and column sums (of x = block - seg.shift; the upper triangle of
        ``gram`` is what counts); False (nothing added) when the block holds NaN/Inf (seen in its Gram
        trace or sums). ``redo(offset)`` returns the products of the block re-centred on the new shift
        seg.shift (= old shift + offset) when the block drifted."""
        seg = self.seg
        trace = float(gram.diagonal().sum())
        if not (math.isfinite(trace) and math.isfinite(float(sums.sum()))):
            return False
        if not self.center:
            seg.add(gram, None, m)
            return True
        offset = sums / m  # block mean minus the shift
        # the correction m * offset offset^T cancels digits once the offset exceeds the block's own spread
        if seg.n and 2.0 * m * float(offset @ offset) > trace:
            assert seg.shift is not None
            shift = seg.shift + offset
            self.close()
            self.seg.shift = shift
            gram, sums = redo(offset)
        self.seg.add(gram, sums, m)
        return True

    def close(self) -> None:
        """Fold the open segment into the closed moments; the next segment keeps its shift until reset."""
        if self.seg.gram is not None:
            self.closed.merge(*self.seg.moments(self.center))
        self.seg = Segment(self.seg.shift)


def lane_count(d: int) -> int:
    """Independent running sums for D columns: 8, fewer when 8 D x D float64 sums exceed 128 MB."""
    return max(1, min(_MAX_LANES, _LANE_BYTES // (8 * (d + 1) ** 2)))


class BlockSlot:
    """One worker's reused float64 block buffer (rows x (d + 1), last column ones) and Gram output."""

    def __init__(self, rows: int, d: int) -> None:
        self.buf = np.empty((rows, d + 1))
        self.buf[:, d] = 1.0
        self.gram = np.empty((d + 1, d + 1))

    def products(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x^T x, column sums of x) of the first m buffer rows, from one Gram product of [x, 1]."""
        d = self.gram.shape[0] - 1
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf rows are reported by the caller
            np.matmul(self.buf[:m].T, self.buf[:m], out=self.gram)  # A.T @ A of one buffer: BLAS syrk
        g = torch.from_numpy(self.gram)
        return g[:d, :d], g[:d, d]
