"""Frozen-feature evaluation (SPEC section 6): weighted kNN and an offline linear probe, top-1 / top-5.

Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from dimcollapse.diagnostics.engine.knn import knn_core
from dimcollapse.diagnostics.engine.knn_backends import BackendLike, resolve_backend
from dimcollapse.errors import InputError
from dimcollapse.training.probe_lbfgs import LBFGSProbeSettings, fit_lbfgs_probe, lbfgs_probe_topk
from dimcollapse.utils.distributed import local_only


def _check_features(name: str, x: Tensor, y: Tensor) -> None:
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise InputError(
            f"{name}: features must be [N, D] with labels [N], got {tuple(x.shape)} and {tuple(y.shape)}."
        )
    if x.shape[0] == 0:
        raise InputError(f"{name}: no rows to evaluate.")
    if not torch.isfinite(x).all():
        raise InputError(f"{name}: features contain NaN or Inf; the model diverged or the data is broken.")


def knn_predict_scores(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    k: int,
    num_classes: int,
    temperature: float = 0.07,
    block_size: int = 1024,
) -> Tensor:
    """Class scores s_c(q) = sum over the k most cosine-similar train rows i with y_i = c of exp(sim_i / T)
    (Wu et al. 2018 InstDisc convention); computed in blocks of test rows. Returns [N_test, C]."""
    return knn_scores_multi(train_x, train_y, test_x, (k,), num_classes, temperature, block_size)[int(k)]


def knn_scores_multi(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    ks: tuple[int, ...] | list[int],
    num_classes: int,
    temperature: float = 0.07,
    block_size: int = 1024,
    backend: BackendLike = "exact",
) -> dict[int, Tensor]:
    """``knn_predict_scores`` for several k at once: one similarity pass, top-max(k), then prefixes.

    ``backend`` other than "exact" finds the neighbours with that k-NN engine
    (diagnostics.engine.knn_backends) on the unit vectors, where the smallest distances are the largest
    cosine similarities."""
    _check_features("kNN train", train_x, train_y)
    k_max = min(max(int(k) for k in ks), train_x.shape[0])
    bank = F.normalize(train_x.float(), dim=1)
    labels = train_y.long()
    spec = resolve_backend(backend)
    out: dict[int, list[Tensor]] = {int(k): [] for k in ks}
    for start in range(0, test_x.shape[0], block_size):
        q = F.normalize(test_x[start : start + block_size].float(), dim=1)
        if spec.name == "exact":
            top_sim, top_idx = (q @ bank.T).topk(k_max, dim=1)  # sorted: the first k are the k nearest
        else:
            dist, top_idx = knn_core(q, bank, k_max, block_size, spec)
            top_sim = 1.0 - dist * dist / 2.0  # |a - b|^2 = 2 - 2 cos for unit vectors
        weights = (top_sim / temperature).exp()
        top_labels = labels[top_idx]
        for k in out:
            kk = min(k, k_max)
            votes = torch.zeros(q.shape[0], num_classes, dtype=weights.dtype)
            votes.scatter_add_(1, top_labels[:, :kk], weights[:, :kk])
            out[k].append(votes)
    return {k: torch.cat(v) for k, v in out.items()}


def topk_accuracy(scores: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Fraction of rows whose label is among the k highest scores, for each k (ties broken by index)."""
    out = {}
    for k in ks:
        kk = min(k, scores.shape[1])
        top = scores.topk(kk, dim=1).indices
        out[k] = float((top == labels.view(-1, 1)).any(dim=1).float().mean())
    return out


def knn_accuracies(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    ks: tuple[int, ...] | list[int] = (20, 200),
    temperature: float = 0.07,
    num_classes: int | None = None,
    backend: BackendLike = "exact",
) -> dict[int, tuple[float, float]]:
    """{k: (top-1, top-5)} of the weighted kNN for several k with one similarity pass."""
    _check_features("kNN test", test_x, test_y)
    c = int(num_classes or int(max(train_y.max(), test_y.max())) + 1)
    scores = knn_scores_multi(train_x, train_y, test_x, ks, c, temperature, backend=backend)
    out = {}
    for k, s in scores.items():
        acc = topk_accuracy(s, test_y.long())
        out[k] = (acc[1], acc[5])
    return out


def knn_accuracy(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    k: int = 200,
    temperature: float = 0.07,
    num_classes: int | None = None,
    backend: BackendLike = "exact",
) -> tuple[float, float]:
    """Weighted kNN (cosine, votes exp(sim/T)) top-1 and top-5 accuracy of ``test`` against ``train``."""
    _check_features("kNN test", test_x, test_y)
    c = int(num_classes or int(max(train_y.max(), test_y.max())) + 1)
    scores = knn_scores_multi(train_x, train_y, test_x, (k,), c, temperature, backend=backend)[int(k)]
    acc = topk_accuracy(scores, test_y.long())
    return acc[1], acc[5]


def standardize(train_x: Tensor, *others: Tensor) -> list[Tensor]:
    """(x - mean_train) / std_train per feature (std floored at 1e-6) for train and the other sets."""
    mean = train_x.mean(0, keepdim=True)
    std = train_x.std(0, keepdim=True).clamp_min(1e-6)
    return [(t - mean) / std for t in (train_x, *others)]


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    num_classes: int | None = None,
    epochs: int = 100,
    weight_decay: float = 1e-4,
    dtype: torch.dtype = torch.float64,
) -> tuple[float, float]:
    """Multinomial logistic regression on standardised frozen features, full-batch L-BFGS for at most
    ``epochs`` iterations minimising CE + weight_decay/2 ||W||^2 in ``dtype`` on the features' device, in
    this process alone; returns test top-1 and top-5 (training/probe_lbfgs.py; the fast CPU evaluation,
    the papers' protocol is training/probe_sgd.py)."""
    _check_features("linear probe train", train_x, train_y)
    _check_features("linear probe test", test_x, test_y)
    c = int(num_classes or int(max(train_y.max(), test_y.max())) + 1)
    name = {torch.float32: "float32", torch.float64: "float64"}.get(dtype)
    if name is None:
        raise InputError(f"linear probe: dtype must be float32 or float64, got {dtype}.")
    settings = LBFGSProbeSettings(int(epochs), float(weight_decay), name)
    with local_only():
        probe = fit_lbfgs_probe(train_x, train_y, c, settings)
        tops = lbfgs_probe_topk(probe, test_x, test_y)
    return tops[1], tops[5]


@torch.no_grad()
def extract_features(
    encode: Callable[[Tensor], tuple[Tensor, Tensor]],
    batches: Iterable[tuple[Tensor, Tensor]],
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor, Tensor]:
    """Run ``encode(x_uint8) -> (r, z)`` over (x, y) ``batches``; returns (R, Z, Y) on the CPU (float32)."""
    rs, zs, ys = [], [], []
    for x, y in batches:
        r, z = encode(x.to(device))
        rs.append(r.float().cpu())
        zs.append(z.float().cpu())
        ys.append(torch.as_tensor(y).long().cpu())
    if not rs:
        raise InputError("no images to evaluate; check eval.max_train / eval.max_test and the dataset.")
    return torch.cat(rs), torch.cat(zs), torch.cat(ys)
