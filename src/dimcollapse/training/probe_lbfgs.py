"""The fast linear probe: multinomial logistic regression on standardised frozen features, full-batch
L-BFGS (strong Wolfe line search), on the features' device and across processes.

Each process holds its share of the training rows. The standardisation uses the global mean and std
(two all-reduced passes in float64), the loss is (1/N) sum_i CE_i over every process's rows plus
weight_decay/2 ||W||^2, and its value and gradients are all-reduced before L-BFGS reads them, so every
process takes the same steps as one process over all the rows (to float summation order). Rows go through
the product in chunks of at most CHUNK_BYTES of standardised features: the working memory is bounded
whatever N is (the chunks are standardised once and kept when they all fit, else anew per evaluation).

``dtype`` float32 is the default: on the features measured (benchmarks/bench_eval.py) its accuracy is
that of float64 to 0.1 point at a third of the time; float64 stays available. The record names the
solver, the dtype and the iterations / function evaluations L-BFGS took (``tolerance`` stops it early when
the loss changes less than that between iterations).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.utils.distributed import sum_detached

DTYPES = {"float32": torch.float32, "float64": torch.float64}
CHUNK_BYTES = 512 * 2**20  # standardised rows per product (and kept, when all chunks fit in one)


@dataclass(frozen=True)
class LBFGSProbeSettings:
    """The L-BFGS probe's settings: iterations at most, L2 weight decay, dtype, stop tolerance."""

    iterations: int = 100
    weight_decay: float = 1e-4
    dtype: str = "float32"
    tolerance: float = 1e-9  # stop when the loss (or the step) changes less than this
    history: int = 20

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES or self.iterations < 1 or self.weight_decay < 0 or self.tolerance < 0:
            raise ConfigError(
                f"L-BFGS probe needs dtype in {sorted(DTYPES)}, iterations >= 1, weight_decay >= 0, "
                f"tolerance >= 0; got {self}."
            )

    def describe(self) -> str:
        """The probe's name in every table: solver, dtype, iteration cap."""
        return f"L-BFGS (fast CPU evaluation): {self.dtype}, up to {self.iterations} iterations"


@dataclass
class LBFGSProbe:
    """A fitted probe: logits = ((x - mean) / std) W + b; how many iterations and evaluations it took."""

    weight: Tensor
    bias: Tensor
    mean: Tensor
    std: Tensor
    iterations: int
    evaluations: int
    loss: float

    def logits(self, x: Tensor) -> Tensor:
        """Class scores of raw features ``x`` (standardised with the training statistics)."""
        dt = self.weight.dtype
        z = (x.to(self.weight.device, dt) - self.mean.to(dt)) / self.std.to(dt)
        return z @ self.weight + self.bias


def _chunks(n: int, dim: int, itemsize: int) -> list[slice]:
    step = max(1, CHUNK_BYTES // max(1, dim * itemsize))
    return [slice(s, min(s + step, n)) for s in range(0, n, step)]


def global_moments(x: Tensor) -> tuple[Tensor, Tensor, int]:
    """(mean, std with N - 1, N) per column over every process's rows, in float64 (two passes, chunked)."""
    parts = _chunks(x.shape[0], x.shape[1], 8)
    acc = torch.zeros(x.shape[1] + 1, dtype=torch.float64, device=x.device)
    for p in parts:
        acc[:-1] += x[p].double().sum(0)
    acc[-1] = x.shape[0]
    acc = sum_detached(acc)
    n = int(acc[-1])
    mean = acc[:-1] / max(n, 1)
    sq = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for p in parts:
        sq += ((x[p].double() - mean) ** 2).sum(0)
    std = (sum_detached(sq) / max(n - 1, 1)).sqrt().clamp_min(1e-6)
    return mean, std, n


def fit_lbfgs_probe(x: Tensor, y: Tensor, num_classes: int, settings: LBFGSProbeSettings) -> LBFGSProbe:
    """Fit W, b on this process's rows ``x`` [n, D] / labels ``y`` together with every other process's
    (collective; module docstring)."""
    dtype = DTYPES[settings.dtype]
    mean, std, n = global_moments(x)
    if n == 0:
        raise InputError("linear probe: no training rows.")
    parts = _chunks(x.shape[0], x.shape[1], torch.finfo(dtype).bits // 8)
    y = y.long().to(x.device)

    mean_d, std_d = mean.to(dtype), std.to(dtype)

    def standardised(p: slice) -> Tensor:
        return (x[p].to(dtype) - mean_d) / std_d

    kept = [standardised(p) for p in parts] if len(parts) == 1 else None
    w = torch.zeros(x.shape[1], num_classes, dtype=dtype, device=x.device, requires_grad=True)
    b = torch.zeros(num_classes, dtype=dtype, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=settings.iterations,
        history_size=settings.history,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=settings.tolerance,
    )

    def closure() -> Tensor:
        opt.zero_grad()
        total = torch.zeros((), dtype=dtype, device=x.device)
        for j, p in enumerate(parts):
            z = kept[j] if kept is not None else standardised(p)
            loss = F.cross_entropy(z @ w + b, y[p], reduction="sum") / n
            loss.backward()
            total += loss.detach()
        for t in (w, b):
            assert t.grad is not None
            t.grad.copy_(sum_detached(t.grad))
        reg = 0.5 * settings.weight_decay * (w * w).sum()
        reg.backward()
        last[0] = sum_detached(total) + reg.detach()
        return last[0]

    last = [torch.zeros(())]
    with torch.enable_grad():
        opt.step(closure)
    state = opt.state[w]
    its, evals = int(state["n_iter"]), int(state["func_evals"])
    return LBFGSProbe(w.detach(), b.detach(), mean, std, its, evals, float(last[0]))


@torch.no_grad()
def lbfgs_probe_topk(
    probe: LBFGSProbe, x: Tensor, y: Tensor, tops: tuple[int, ...] = (1, 5)
) -> dict[int, float]:
    """Fraction of every process's rows whose label is among the top-t logits (counts summed)."""
    hits = torch.zeros(len(tops) + 1, dtype=torch.float64, device=probe.weight.device)
    y = y.long().to(probe.weight.device).view(-1, 1)
    for p in _chunks(x.shape[0], x.shape[1], 8):
        logits = probe.logits(x[p])
        for j, t in enumerate(tops):
            hits[j] += (logits.topk(min(t, logits.shape[1]), dim=1).indices == y[p]).any(1).sum()
    hits[-1] = x.shape[0]
    hits = sum_detached(hits)
    if int(hits[-1]) == 0:
        raise InputError("linear probe: no test rows.")
    return {t: float(hits[j] / hits[-1]) for j, t in enumerate(tops)}
