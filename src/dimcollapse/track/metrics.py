"""``CollapseMetrics``: a torchmetrics ``Metric`` that streams embeddings and computes the catalogue.

    metric = CollapseMetrics()
    for x in loader:
        metric.update(model(x))          # (batch, dim) embeddings, any device/dtype
    out = metric.compute()               # {"erank": tensor, "rankme": ..., "spectrum": tensor[dim]}
    metric.reset()

State (all reducible across processes, so ``compute()`` under DDP equals one process on all the data):
- ``moments``: count, mean and centred cross-product M2 of every row in float64, packed in one
  (dim + 2, dim) tensor and merged with the exact pairwise update of Chan, Golub & LeVeque (1979);
  the covariance is M2 / n and the uncentred Gram (RankMe) is (M2 + n mean mean^T) / n;
- ``reservoir`` / ``reservoir_weight``: a uniform reservoir sample (Vitter's algorithm R) of at most
  ``reservoir_size`` rows per process for the k-NN metrics (LID), each row weighted by how many rows
  it stands for; after gathering, more rows than ``reservoir_size`` are subsampled with probability
  proportional to the weights (fixed seed). With fewer rows than ``reservoir_size`` in total, LID uses
  every row, exactly as on one process;
- with ``lidar=True``: group count, within-group scatter and the moments of the per-sample view means
  for LiDAR (``update(views=...)``, views shaped (n, q, dim)).
Every process must call ``update`` at least once before ``compute`` (states are created lazily when
``dim`` is not given).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from dimcollapse.diagnostics.catalogue import COLLAPSE_THRESHOLD, Context, evaluate
from dimcollapse.diagnostics.lid import lid_mle, lid_mom
from dimcollapse.diagnostics.lidar import DELTA, EPS, lidar_eigenvalues
from dimcollapse.diagnostics.spectrum import spectrum_of
from dimcollapse.errors import ConfigError, InputError
from dimcollapse.utils.distributed import rank


def batch_moments(z: Tensor) -> Tensor:
    """Pack (n, mean, M2) of the rows of z (float64) into one (d + 2, d) tensor."""
    n, d = z.shape
    out = torch.zeros(d + 2, d, dtype=torch.float64, device=z.device)
    if n == 0:
        return out
    mean = z.mean(0)
    x = z - mean
    out[0, 0] = n
    out[1] = mean
    out[2:] = x.T @ x
    return out


def merge_moments(stacked: Tensor) -> Tensor:
    """Merge packed moments along dim 0: Chan et al. M2 = M2_a + M2_b + delta delta^T n_a n_b / n."""
    if stacked.ndim == 2:
        return stacked
    out = stacked[0].clone()
    for part in stacked[1:]:
        na, nb = out[0, 0], part[0, 0]
        if float(nb) == 0:
            continue
        if float(na) == 0:
            out = part.clone()
            continue
        n = na + nb
        delta = part[1] - out[1]
        out[2:] += part[2:] + torch.outer(delta, delta) * (na * nb / n)
        out[1] = out[1] + delta * (nb / n)
        out[0, 0] = n
    return out


def unpack_moments(m: Tensor) -> tuple[int, np.ndarray, np.ndarray]:
    """(n, mean, M2) as Python int and float64 numpy arrays."""
    m = merge_moments(m).detach().cpu()
    return round(float(m[0, 0])), m[1].numpy(), m[2:].numpy()


class CollapseMetrics(Metric):
    """Streamed collapse metrics of embeddings (every catalogue metric; see the module docstring)."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = None
    moments: Tensor
    seen: Tensor
    reservoir: list[Tensor] | Tensor
    reservoir_weight: list[Tensor] | Tensor
    view_means: Tensor
    view_within: Tensor
    view_dof: Tensor

    def __init__(
        self,
        dim: int | None = None,
        k: int = 20,
        reservoir_size: int = 4096,
        lidar: bool = False,
        l2_normalize: bool = False,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        """``dim``: embedding size (None: taken from the first batch); ``k``: LID neighbours (0: no LID)."""
        super().__init__(**kwargs)
        if k != 0 and k < 2:
            raise ConfigError(f"k must be 0 (no LID) or >= 2 neighbours, got {k}.")
        if reservoir_size < 3:
            raise ConfigError(f"reservoir_size must be >= 3 rows, got {reservoir_size}.")
        self.k, self.reservoir_size, self.seed = int(k), int(reservoir_size), int(seed)
        self.with_lidar, self.l2_normalize = bool(lidar), bool(l2_normalize)
        self.dim: int | None = None
        self._gen: torch.Generator | None = None
        if dim is not None:
            self._create_states(int(dim))

    def _create_states(self, d: int) -> None:
        self.dim = d
        self.add_state("moments", torch.zeros(d + 2, d, dtype=torch.float64), dist_reduce_fx=merge_moments)
        self.add_state("seen", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("reservoir", [], dist_reduce_fx="cat")
        self.add_state("reservoir_weight", [], dist_reduce_fx="cat")
        if self.with_lidar:
            self.add_state(
                "view_means", torch.zeros(d + 2, d, dtype=torch.float64), dist_reduce_fx=merge_moments
            )
            self.add_state("view_within", torch.zeros(d, d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state("view_dof", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _rows(self, t: Tensor, name: str, ndim: int) -> Tensor:
        if not isinstance(t, Tensor):
            t = torch.as_tensor(np.asarray(t))
        if t.ndim != ndim:
            shape = "(batch, dim)" if ndim == 2 else "(samples, views, dim)"
            raise InputError(f"CollapseMetrics.update: {name} must have shape {shape}, got {tuple(t.shape)}.")
        t = t.detach().to(self.moments.device if self.dim else t.device, torch.float64)
        if not bool(torch.isfinite(t).all()):
            raise InputError(f"CollapseMetrics.update: {name} contains NaN or Inf; the model diverged.")
        if self.l2_normalize:
            t = t / torch.linalg.vector_norm(t, dim=-1, keepdim=True).clamp_min(1e-300)
        return t

    def update(self, z: Tensor | None = None, views: Tensor | None = None) -> None:
        """Add embeddings z (batch, dim) and/or view groups (samples, q views, dim) for LiDAR."""
        if z is None and views is None:
            raise InputError("CollapseMetrics.update needs embeddings z (batch, dim) or views=(n, q, dim).")
        first = z if z is not None else views
        assert first is not None
        if self.dim is None:
            self._create_states(int(first.shape[-1]))
        if z is not None:
            z = self._rows(z, "z", 2)
            self._check_dim(z)
            self.moments = merge_moments(torch.stack([self.moments, batch_moments(z)]))
            if self.k:
                self._reservoir_add(z.to(torch.float32))
        if views is not None:
            self._update_views(views)

    def _check_dim(self, t: Tensor) -> None:
        if t.shape[-1] != self.dim:
            raise InputError(f"CollapseMetrics: got dim {t.shape[-1]} but earlier batches had {self.dim}.")

    def _update_views(self, views: Tensor) -> None:
        if not self.with_lidar:
            raise ConfigError("views were given but LiDAR is off: build CollapseMetrics(lidar=True).")
        v = self._rows(views, "views", 3)
        self._check_dim(v)
        if v.shape[1] < 2:
            raise InputError(f"views need q >= 2 augmented views per sample, got shape {tuple(v.shape)}.")
        mu = v.mean(1)
        dev = (v - mu[:, None, :]).reshape(-1, v.shape[2])
        self.view_means = merge_moments(torch.stack([self.view_means, batch_moments(mu)]))
        self.view_within = self.view_within + dev.T @ dev
        self.view_dof = self.view_dof + v.shape[0] * (v.shape[1] - 1)

    def _reservoir_add(self, z: Tensor) -> None:
        if self._gen is None:
            self._gen = torch.Generator().manual_seed(self.seed * 7919 + rank())
        cap, t0 = self.reservoir_size, int(self.seen)
        buf = self.reservoir[0] if self.reservoir else z[:0]
        fill = max(0, min(z.shape[0], cap - buf.shape[0]))
        buf = torch.cat([buf, z[:fill]])
        rest = z[fill:]
        if rest.shape[0]:
            pos = torch.arange(t0 + fill, t0 + z.shape[0], dtype=torch.float64)
            slot = (torch.rand(rest.shape[0], generator=self._gen, dtype=torch.float64) * (pos + 1)).long()
            take = slot < cap
            rows, slot = rest[take.to(rest.device)], slot[take]
            order = torch.arange(slot.shape[0])
            last = torch.full((cap,), -1, dtype=torch.long).scatter_reduce(0, slot, order, "amax")
            keep = last[slot] == order  # several rows drawn for one slot: the latest wins (as sequentially)
            buf = buf.clone()
            buf[slot[keep].to(buf.device)] = rows[keep.to(rows.device)]
        self.seen = self.seen + z.shape[0]
        self.reservoir = [buf]
        self.reservoir_weight = [
            torch.full(
                (buf.shape[0],), float(self.seen) / buf.shape[0], dtype=torch.float64, device=buf.device
            )
        ]

    def _lid_rows(self) -> Tensor | None:
        if not self.k or (isinstance(self.reservoir, list) and not self.reservoir):
            return None
        rows, w = dim_zero_cat(self.reservoir), dim_zero_cat(self.reservoir_weight)
        if rows.shape[0] > self.reservoir_size:  # gathered from several processes
            gen = torch.Generator().manual_seed(self.seed)
            pick = torch.multinomial(w.cpu(), self.reservoir_size, replacement=False, generator=gen)
            rows = rows[pick.sort().values.to(rows.device)]
        return rows.cpu()

    def context(self) -> Context:
        """The catalogue Context of everything seen (synchronised across processes inside compute)."""
        if self.dim is None:
            raise InputError("CollapseMetrics.compute() before any update(); feed embeddings first.")
        n, mean, m2 = unpack_moments(self.moments)
        if n < 2:
            raise InputError(f"CollapseMetrics has {n} row(s); at least 2 are needed for a covariance.")
        ctx = Context(eig=spectrum_of((m2 + m2.T) / (2 * n)), n=n, threshold=COLLAPSE_THRESHOLD)
        gram = (m2 + n * np.outer(mean, mean)) / n
        ctx.gram_eig = spectrum_of((gram + gram.T) / 2)
        rows = self._lid_rows()
        if rows is not None and rows.shape[0] > 2:
            k = min(self.k, rows.shape[0] - 1)
            ctx.lid_mle, ctx.lid_mom = lid_mle(rows.numpy(), k=k), lid_mom(rows.numpy(), k=k)
            ctx.extra.update({"lid_k": float(k), "lid_points": float(rows.shape[0])})
        if self.with_lidar and float(self.view_means[0, 0]) >= 2:
            g, vmean, vm2 = unpack_moments(self.view_means)
            ctx.lidar_eig = lidar_eigenvalues(
                g,
                int(self.view_dof),
                vmean * g,
                vm2 + g * np.outer(vmean, vmean),
                self.view_within.detach().cpu().numpy(),
                DELTA,
                EPS,
            )
        return ctx

    def compute(self) -> dict[str, Tensor]:
        """Every catalogue metric available (0-d float64 tensors), plus n, dim and ``spectrum`` (1-D)."""
        ctx = self.context()
        out = {"n": float(ctx.n), "d": float(self.dim or 0), **ctx.extra, **evaluate(ctx)}
        result = {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}
        result["spectrum"] = torch.from_numpy(ctx.eig.copy())
        return result

    def forward(self, *args: Any, **kwargs: Any) -> None:
        """Same as ``update`` (a per-batch value of these metrics means little); read with ``compute()``."""
        self.update(*args, **kwargs)

    def reset(self) -> None:
        """Forget every row (and restart the reservoir's random stream)."""
        super().reset()
        self._gen = None


def scalars(result: dict[str, Tensor]) -> dict[str, float]:
    """The 0-d entries of a ``CollapseMetrics.compute()`` result as floats (for loggers)."""
    return {k: float(v) for k, v in result.items() if v.ndim == 0}


__all__ = ["CollapseMetrics", "batch_moments", "merge_moments", "scalars"]
