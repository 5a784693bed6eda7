"""Weighted kNN on the device and across processes (SPEC section 6; InstDisc's votes exp(cos / T)).

The bank (training features) is L2-normalised once and kept on its device, in float16 when
``storage="float16"`` (half the memory; products are taken in float32 tile by tile). Queries go in blocks
of ``block`` rows against bank tiles of ``tile`` rows, keeping a running top-k (memory O(block x (tile +
k)) beyond the bank). Under torch.distributed each process holds and searches only its share of the bank
(rows rank, rank + W, ...); the k best candidates of every process are gathered and merged, so every
process gets the same neighbours as one process over the whole bank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dimcollapse.errors import InputError
from dimcollapse.utils.distributed import gather_detached, rank, world_size

STORAGE = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def prepare_bank(train_x: Tensor, storage: str = "float32", shard: bool = True) -> tuple[Tensor, Tensor]:
    """(unit rows of this process's share of ``train_x`` in the storage dtype, their global row indices)."""
    if storage not in STORAGE:
        raise InputError(f"kNN storage must be one of {', '.join(STORAGE)}, got '{storage}'.")
    rows = torch.arange(rank(), train_x.shape[0], world_size()) if shard else torch.arange(train_x.shape[0])
    mine = train_x[rows.to(train_x.device)]
    return F.normalize(mine.float(), dim=1).to(STORAGE[storage]), rows.to(train_x.device)


def _local_topk(q: Tensor, bank: Tensor, rows: Tensor, k: int, tile: int) -> tuple[Tensor, Tensor]:
    """Running top-k (similarities, global rows) of unit queries ``q`` over bank tiles."""
    best_s = q.new_full((q.shape[0], 0), float("-inf"))
    best_i = torch.zeros((q.shape[0], 0), dtype=torch.long, device=q.device)
    for start in range(0, bank.shape[0], tile):
        part = bank[start : start + tile].to(q.dtype)
        sims = q @ part.T
        cand_s = torch.cat([best_s, sims], dim=1)
        cand_i = torch.cat([best_i, rows[start : start + tile].expand(q.shape[0], -1)], dim=1)
        best_s, pos = cand_s.topk(min(k, cand_s.shape[1]), dim=1)
        best_i = cand_i.gather(1, pos)
    return best_s, best_i


TILE_BYTES = 256 * 2**20  # the similarity tile of one query block: block x tile float32 values at most


def knn_neighbours(
    queries: Tensor, bank: Tensor, rows: Tensor, k: int, block: int = 1024, tile: int | None = None
) -> tuple[Tensor, Tensor]:
    """(cosine similarities [Q, k] descending, global bank rows [Q, k]) of every query over the whole
    bank: each process searches its share, the candidates of every process are merged. ``tile`` bank rows
    per product (default: as many as keep a block's similarities within TILE_BYTES)."""
    tile = int(tile or max(k, TILE_BYTES // (4 * block)))
    sims, idx = [], []
    for start in range(0, queries.shape[0], block):
        q = F.normalize(queries[start : start + block].float(), dim=1)
        s, i = _local_topk(q, bank, rows, k, tile)
        sims.append(s)
        idx.append(i)
    s_local, i_local = torch.cat(sims), torch.cat(idx)
    w = world_size()
    if w > 1 and s_local.shape[1] < k:  # a share smaller than k: pad so every process sends [Q, k]
        pad = k - s_local.shape[1]
        s_local = F.pad(s_local, (0, pad), value=float("-inf"))
        i_local = F.pad(i_local, (0, pad), value=0)
    if w > 1:  # [Q, k] of every process -> [Q, W k] -> the k best
        s_all = (
            gather_detached(s_local).view(w, *s_local.shape).permute(1, 0, 2).reshape(s_local.shape[0], -1)
        )
        i_all = (
            gather_detached(i_local).view(w, *i_local.shape).permute(1, 0, 2).reshape(i_local.shape[0], -1)
        )
        s_local, pos = s_all.topk(min(k, s_all.shape[1]), dim=1)
        i_local = i_all.gather(1, pos)
    return s_local, i_local


def knn_vote_scores(
    sims: Tensor, idx: Tensor, train_y: Tensor, ks: tuple[int, ...], num_classes: int, temperature: float
) -> dict[int, Tensor]:
    """{k: class scores [Q, C]}: s_c = sum over the k nearest with label c of exp(cos / T)."""
    weights = (sims / temperature).exp()
    labels = train_y.to(idx.device)[idx]
    out = {}
    for k in ks:
        kk = min(int(k), sims.shape[1])
        votes = torch.zeros(sims.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
        votes.scatter_add_(1, labels[:, :kk], weights[:, :kk])
        out[int(k)] = votes
    return out


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
    """{k: (top-1, top-5)} of the weighted kNN of ``test`` against the whole ``train`` bank, on the
    features' device; every process searches its share of the bank (module docstring)."""
    if train_x.shape[0] == 0 or test_x.shape[0] == 0:
        raise InputError("kNN: no rows to evaluate.")
    c = int(num_classes or int(max(train_y.max(), test_y.max())) + 1)
    bank, rows = prepare_bank(train_x, storage)
    k_max = min(max(int(k) for k in ks), train_x.shape[0])
    sims, idx = knn_neighbours(test_x, bank, rows, k_max)
    out = {}
    y = test_y.long().to(sims.device).view(-1, 1)
    for k, scores in knn_vote_scores(sims, idx, train_y.long(), tuple(ks), c, temperature).items():
        top = scores.topk(min(5, c), dim=1).indices
        out[k] = (float((top[:, :1] == y).any(1).float().mean()), float((top == y).any(1).float().mean()))
    return out
