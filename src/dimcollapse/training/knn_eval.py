"""Weighted kNN on the device and across processes (SPEC section 6; InstDisc's votes exp(cos / T)).

Each process holds a share of the bank (training features, L2-normalised once, in float16 / bfloat16 when
``storage`` says so: half the memory; products are taken in float32 tile by tile) and a share of the
queries (test features). The queries of one process at a time go, block by block, to every process
(a broadcast of ``block`` rows); each process finds the k best of its bank share by a running top-k over
bank tiles, and the k candidates of every process (similarity, label, global row) are gathered and
merged: the owner of the block keeps the k nearest of the whole bank. No process ever holds another's
bank share or more than one block of another's queries.

Memory per process beyond its shares: a block's similarities (block x tile float32, at most TILE_BYTES),
a float32 copy of one bank tile when the bank is stored in half precision (at most TILE_BYTES), the block
itself and W x block x k candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dimcollapse.errors import InputError
from dimcollapse.utils.distributed import (
    batch_sizes,
    broadcast_from,
    gather_detached,
    rank,
    sum_detached,
    world_size,
)

STORAGE = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
TILE_BYTES = 256 * 2**20  # bound of a block's similarities and of a float32 copy of one bank tile
BLOCK = 1024  # query rows per block


@dataclass(frozen=True)
class Bank:
    """This process's share of the kNN bank: unit rows (storage dtype), their labels and global rows."""

    unit: Tensor
    labels: Tensor
    ids: Tensor

    @classmethod
    def of(cls, x: Tensor, labels: Tensor, ids: Tensor, storage: str = "float32") -> Bank:
        """The bank share of rows ``x`` (any dtype) with ``labels`` and global row numbers ``ids``."""
        if storage not in STORAGE:
            raise InputError(f"kNN storage must be one of {', '.join(STORAGE)}, got '{storage}'.")
        unit = F.normalize(x.float(), dim=1).to(STORAGE[storage])
        return cls(unit, labels.long().to(x.device), ids.long().to(x.device))


def prepare_bank(train_x: Tensor, storage: str = "float32", shard: bool = True) -> tuple[Tensor, Tensor]:
    """(unit rows of this process's share of ``train_x`` in the storage dtype, their global row indices):
    rows rank, rank + W, ... when ``shard``."""
    rows = torch.arange(rank(), train_x.shape[0], world_size()) if shard else torch.arange(train_x.shape[0])
    rows = rows.to(train_x.device)
    bank = Bank.of(train_x[rows], rows, rows, storage)
    return bank.unit, bank.ids


def tile_rows(block: int, dim: int, k: int) -> int:
    """Bank rows per product: block x tile similarities and a tile x dim float32 copy within TILE_BYTES."""
    return max(k, 1, TILE_BYTES // (4 * max(block, dim, 1)))


def _local_topk(q: Tensor, bank: Bank, k: int, tile: int) -> tuple[Tensor, Tensor, Tensor]:
    """Running top-k (similarities, labels, global rows) of unit float32 queries ``q`` over bank tiles:
    each tile's k best, merged with the best so far (2k candidates)."""
    best_s = q.new_full((q.shape[0], 0), float("-inf"))
    best_j = torch.zeros((q.shape[0], 0), dtype=torch.long, device=q.device)  # positions in the share
    for start in range(0, bank.unit.shape[0], tile):
        sims = q @ bank.unit[start : start + tile].to(q.dtype).T
        s, j = sims.topk(min(k, sims.shape[1]), dim=1)
        cand_s, cand_j = torch.cat([best_s, s], dim=1), torch.cat([best_j, j + start], dim=1)
        best_s, pos = cand_s.topk(min(k, cand_s.shape[1]), dim=1)
        best_j = cand_j.gather(1, pos)
    return best_s, bank.labels[best_j], bank.ids[best_j]


def _merge(s: Tensor, lab: Tensor, ids: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The k best candidates of every process (each sends [b, k], padded with -inf) for each query."""
    w = world_size()
    if w == 1:
        return s, lab, ids
    pad = k - s.shape[1]
    if pad > 0:  # a bank share smaller than k
        s = F.pad(s, (0, pad), value=float("-inf"))
        lab, ids = F.pad(lab, (0, pad), value=0), F.pad(ids, (0, pad), value=0)

    def across(t: Tensor) -> Tensor:  # [b, k] of every process -> [b, W k]
        return gather_detached(t).view(w, *t.shape).permute(1, 0, 2).reshape(t.shape[0], -1)

    s_all, pos = across(s).topk(k, dim=1)
    return s_all, across(lab).gather(1, pos), across(ids).gather(1, pos)


def _block_from(owner: int, q: Tensor, rows: int, dim: int, device: torch.device) -> Tensor:
    """The owner's block of unit float32 queries on every process (a broadcast; q itself when W = 1)."""
    if world_size() == 1:
        return q
    buf = q.contiguous() if rank() == owner else torch.empty(rows, dim, dtype=torch.float32, device=device)
    return broadcast_from(buf, owner)


def sharded_knn(
    queries: Tensor, bank: Bank, k: int, block: int = BLOCK, tile: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(similarities [Q, k] descending, labels [Q, k], global bank rows [Q, k]) of this process's
    ``queries`` over the whole bank (every process's share; module docstring). Collective: every process
    calls it, with its own queries (any count, also 0)."""
    dim, device = bank.unit.shape[1], bank.unit.device
    counts = batch_sizes(queries.shape[0], device)
    tile = int(tile or tile_rows(block, dim, k))
    out: list[tuple[Tensor, Tensor, Tensor]] = []
    for owner, count in enumerate(counts):
        for start in range(0, count, block):
            rows = min(block, count - start)
            mine = queries[start : start + rows] if owner == rank() else queries[:0]
            q = _block_from(owner, F.normalize(mine.to(device).float(), dim=1), rows, dim, device)
            found = _merge(*_local_topk(q, bank, k, tile), k)
            if owner == rank():
                out.append(found)
    if not out:
        empty = torch.zeros((0, k), device=device)
        return empty, empty.long(), empty.long()
    return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out]), torch.cat([o[2] for o in out])


def knn_neighbours(
    queries: Tensor, bank: Tensor, rows: Tensor, k: int, block: int = BLOCK, tile: int | None = None
) -> tuple[Tensor, Tensor]:
    """(cosine similarities [Q, k] descending, global bank rows [Q, k]) of queries every process holds
    (the same on all) over the bank whose share ``bank`` / ``rows`` each process holds."""
    share = Bank(bank, rows, rows)  # the global rows serve as labels: the merge carries them along
    tile = int(tile or tile_rows(block, bank.shape[1], k))
    sims, idx = [], []
    for start in range(0, queries.shape[0], block):
        q = F.normalize(queries[start : start + block].to(bank.device).float(), dim=1)
        s, _, i = _merge(*_local_topk(q, share, k, tile), k)
        sims.append(s)
        idx.append(i)
    return torch.cat(sims), torch.cat(idx)


def vote_scores(
    sims: Tensor, labels: Tensor, ks: tuple[int, ...], num_classes: int, t: float
) -> dict[int, Tensor]:
    """{k: class scores [Q, C]}: s_c = sum over the k nearest (in column order) labelled c of exp(cos/T)."""
    weights = (sims / t).exp()
    out = {}
    for k in ks:
        kk = min(int(k), sims.shape[1])
        votes = torch.zeros(sims.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
        votes.scatter_add_(1, labels[:, :kk], weights[:, :kk])
        out[int(k)] = votes
    return out


def knn_vote_scores(
    sims: Tensor, idx: Tensor, train_y: Tensor, ks: tuple[int, ...], num_classes: int, temperature: float
) -> dict[int, Tensor]:
    """``vote_scores`` of neighbours given as rows ``idx`` of the labels ``train_y``."""
    return vote_scores(sims, train_y.to(idx.device)[idx], ks, num_classes, temperature)


def sharded_knn_accuracies(
    bank: Bank,
    test_x: Tensor,
    test_y: Tensor,
    ks: tuple[int, ...],
    temperature: float,
    num_classes: int,
) -> dict[int, tuple[float, float]]:
    """{k: (top-1, top-5)} over every process's test rows, each process holding its share of the bank
    and of the test rows (collective)."""
    sizes = sum_detached(torch.tensor([bank.unit.shape[0], test_x.shape[0]], device=bank.unit.device))
    n_bank, n_test = int(sizes[0]), int(sizes[1])
    if n_bank == 0 or n_test == 0:
        raise InputError("kNN: no rows to evaluate.")
    k_max = min(max(int(k) for k in ks), n_bank)
    sims, labels, _ = sharded_knn(test_x, bank, k_max)
    y = test_y.long().to(sims.device).view(-1, 1)
    hits = torch.zeros(len(ks), 2, dtype=torch.float64, device=sims.device)
    for j, scores in enumerate(vote_scores(sims, labels, tuple(ks), num_classes, temperature).values()):
        top = scores.topk(min(5, num_classes), dim=1).indices
        hits[j, 0], hits[j, 1] = (top[:, :1] == y).any(1).sum(), (top == y).any(1).sum()
    hits = sum_detached(hits) / n_test
    return {int(k): (float(hits[j, 0]), float(hits[j, 1])) for j, k in enumerate(ks)}


def device_knn_accuracies(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    ks: tuple[int, ...] = (20, 200),
    temperature: float = 0.07,
    num_classes: int | None = None,
    storage: str = "float32",
) -> dict[int, tuple[float, float]]:
    """{k: (top-1, top-5)} of the weighted kNN of ``test`` against the whole ``train`` bank, given on
    every process: each process takes rows rank, rank + W, ... of both (``sharded_knn_accuracies``)."""
    if train_x.shape[0] == 0 or test_x.shape[0] == 0:
        raise InputError("kNN: no rows to evaluate.")
    c = int(num_classes or int(max(train_y.max(), test_y.max())) + 1)
    r, w = rank(), world_size()
    rows = torch.arange(r, train_x.shape[0], w, device=train_x.device)
    bank = Bank.of(train_x[rows], train_y.to(train_x.device)[rows], rows, storage)
    return sharded_knn_accuracies(bank, test_x[r::w], test_y[r::w], tuple(ks), temperature, c)
