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

Wide embeddings: when the (dim + 2, dim) float64 moments would exceed the allocation limit
($DIMCOLLAPSE_MAX_ALLOC_GB, ``utils/memory.py``), the metric keeps the rows instead (state ``rows``) and
computes the spectra from the N x N Gram matrix, as ``covariance_spectrum`` does for N < D; rows beyond
what the limit allows are refused with the size. LiDAR needs (dim, dim) matrices and is refused there.

``update`` checks everything first (shape, dtype, finite values, dim), so a rejected batch leaves the
metric as it was; an empty (0, dim) batch adds nothing. ``update(views=...)`` alone feeds LiDAR only:
``compute()`` then returns ``lidar``, ``n`` = 0 and ``d``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from dimcollapse.diagnostics.catalogue import COLLAPSE_THRESHOLD, Context, evaluate
from dimcollapse.diagnostics.engine.moments import merge_moments_into
from dimcollapse.diagnostics.lid import lid_mle, lid_mom
from dimcollapse.diagnostics.lidar import DELTA, EPS, lidar_eigenvalues
from dimcollapse.diagnostics.spectrum import gram_spectrum, spectrum_of
from dimcollapse.errors import ConfigError, InputError
from dimcollapse.track.metric_inputs import metric_rows, overflow_error
from dimcollapse.track.verdict import rows_le_dims
from dimcollapse.utils.distributed import rank
from dimcollapse.utils.memory import allocation_limit, check_allocation
from dimcollapse.utils.options import int_option


class ProbeSizeWarning(UserWarning):
    """The metric saw N <= D rows: at most N - 1 directions can carry variance."""


def rows_warning(n: int, d: int) -> str:
    """The N <= D warning text of ``compute()``."""
    return (
        f"CollapseMetrics saw {n} rows for {d} dimensions (N <= D): at most {n - 1} directions can carry "
        "variance, so collapsed dims, erank and RankMe are bounded by the rows, not the model; feed more "
        f"than {d} rows."
    )


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
    """Merge packed moments along dim 0 with the one exact merge (``diagnostics.engine.moments``, Chan
    et al.)."""
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
        mean = merge_moments_into(out[2:], float(na), out[1], float(nb), part[1], part[2:])
        assert mean is not None
        out[1] = mean
        out[0, 0] = na + nb
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
    rows: list[Tensor]
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
        k = int_option(k, "CollapseMetrics k (LID neighbours)", 2, allow=(0,))
        reservoir_size = int_option(reservoir_size, "CollapseMetrics reservoir_size", 3)
        self.k, self.reservoir_size = k, reservoir_size
        self.seed = int_option(seed, "CollapseMetrics seed", 0)
        self.with_lidar, self.l2_normalize = bool(lidar), bool(l2_normalize)
        self.dim: int | None = None
        self.keeps_rows = False
        self._gen: torch.Generator | None = None
        if dim is not None:
            self._create_states(int_option(dim, "CollapseMetrics dim", 1))

    def _create_states(self, d: int) -> None:
        keeps_rows = self._wide(d)
        self.dim, self.keeps_rows = d, keeps_rows
        if keeps_rows:  # wide embeddings: keep the rows, spectra from the N x N Gram (module docstring)
            self.add_state("rows", [], dist_reduce_fx="cat")
        else:
            self.add_state(
                "moments", torch.zeros(d + 2, d, dtype=torch.float64), dist_reduce_fx=merge_moments
            )
        self.add_state("seen", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("reservoir", [], dist_reduce_fx="cat")
        self.add_state("reservoir_weight", [], dist_reduce_fx="cat")
        if self.with_lidar:
            self.add_state(
                "view_means", torch.zeros(d + 2, d, dtype=torch.float64), dist_reduce_fx=merge_moments
            )
            self.add_state("view_within", torch.zeros(d, d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state("view_dof", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _wide(self, d: int) -> bool:
        """True when the (d + 2, d) moments exceed the allocation limit (rows kept instead); LiDAR refused."""
        moment_bytes = 8 * (d + 2) * d
        if moment_bytes > allocation_limit() and self.with_lidar:
            check_allocation(
                moment_bytes, f"LiDAR's ({d}, {d}) float64 matrices", "Measure LiDAR on fewer features"
            )
        return moment_bytes > allocation_limit()

    def _state_device(self) -> torch.device:
        return self.seen.device if self.dim is not None else torch.device("cpu")

    def update(self, z: Any = None, views: Any = None) -> None:
        """Add embeddings z (batch, dim) and/or view groups (samples, q views, dim) for LiDAR.

        Everything is checked before any state changes (see the module docstring)."""
        if z is None and views is None:
            raise InputError("CollapseMetrics.update needs embeddings z (batch, dim) or views=(n, q, dim).")
        if views is not None and not self.with_lidar:
            raise ConfigError("views were given but LiDAR is off: build CollapseMetrics(lidar=True).")
        zt = None if z is None else metric_rows(z, "z", 2, self.l2_normalize)
        vt = None if views is None else metric_rows(views, "views", 3, self.l2_normalize)
        if vt is not None and vt.shape[1] < 2:
            raise InputError(f"views need q >= 2 augmented views per sample, got shape {tuple(vt.shape)}.")
        dims = {int(t.shape[-1]) for t in (zt, vt) if t is not None} | ({self.dim} if self.dim else set())
        if len(dims) > 1:
            raise InputError(
                f"CollapseMetrics: got dim {sorted(dims)}; every batch (and the views) must have dim "
                f"{self.dim or max(dims)}."
            )
        new = self._new_states(zt, vt, dims.pop())
        if self.dim is None:
            self._create_states(int((zt if zt is not None else vt).shape[-1]))  # type: ignore[union-attr]
        for key, value in new.items():
            setattr(self, key, value)
        if zt is not None and zt.shape[0] and self.k:
            self._reservoir_add(zt.to(self._state_device(), torch.float32))

    def _new_states(self, z: Tensor | None, views: Tensor | None, d: int) -> dict[str, Any]:
        """The states after adding z and views, computed without touching the metric (may raise)."""
        new: dict[str, Any] = {}
        wide = self.keeps_rows if self.dim is not None else self._wide(d)
        if z is not None and z.shape[0]:
            z = z.to(self._state_device())
            if wide:
                n = int(sum(r.shape[0] for r in self.rows)) if self.dim is not None else 0
                n += z.shape[0]
                check_allocation(
                    8 * n * (n + d),
                    f"{n} rows of dim {d} and their {n} x {n} Gram matrix (CollapseMetrics keeps the rows "
                    f"of wide embeddings: their ({d}+2, {d}) moments would need "
                    f"{8 * (d + 2) * d / 2**30:.1f} GiB)",
                    "Feed fewer rows or fewer features",
                )
                if not bool(torch.isfinite(z.abs().max() ** 2 * n)):
                    raise overflow_error(z, "z")
                new["rows"] = [*(self.rows if self.dim is not None else []), z]
            else:
                part = batch_moments(z)
                old = self.moments if self.dim is not None else torch.zeros_like(part)
                merged = merge_moments(torch.stack([old, part]))
                if not bool(torch.isfinite(merged).all()):
                    raise overflow_error(z, "z")
                new["moments"] = merged
        if views is not None and views.shape[0]:
            views = views.to(self._state_device())
            mu = views.mean(1)
            dev = (views - mu[:, None, :]).reshape(-1, d)
            old_means = (
                self.view_means if self.dim is not None else torch.zeros(d + 2, d, dtype=torch.float64)
            )
            new["view_means"] = merge_moments(torch.stack([old_means, batch_moments(mu)]))
            within = dev.T @ dev
            new["view_within"] = within + (self.view_within if self.dim is not None else 0)
            if not (bool(torch.isfinite(new["view_means"]).all()) and bool(torch.isfinite(within).all())):
                raise overflow_error(views, "views")
            new["view_dof"] = (self.view_dof if self.dim is not None else 0) + views.shape[0] * (
                views.shape[1] - 1
            )
        return new

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

    def _spectra(self) -> tuple[int, np.ndarray | None, np.ndarray | None]:
        """(n, centred covariance spectrum, uncentred Gram spectrum); spectra None below 2 rows."""
        if self.keeps_rows:
            rows = dim_zero_cat(self.rows) if len(self.rows) else torch.zeros(0, self.dim or 1)
            n = int(rows.shape[0])
            if n < 2:
                return n, None, None
            return n, gram_spectrum(rows, center=True), gram_spectrum(rows, center=False)
        n, mean, m2 = unpack_moments(self.moments)
        if n < 2:
            return n, None, None
        gram = (m2 + n * np.outer(mean, mean)) / n
        return n, spectrum_of((m2 + m2.T) / (2 * n)), spectrum_of((gram + gram.T) / 2)

    def _lidar_eig(self) -> np.ndarray | None:
        """Eigenvalues of the LiDAR LDA matrix of the view groups (None without 2 groups)."""
        if not self.with_lidar or float(self.view_means[0, 0]) < 2:
            return None
        g, vmean, vm2 = unpack_moments(self.view_means)
        within = self.view_within.detach().cpu().numpy()
        return lidar_eigenvalues(
            g, int(self.view_dof), vmean * g, vm2 + g * np.outer(vmean, vmean), within, DELTA, EPS
        )

    def context(self) -> Context:
        """The catalogue Context of everything seen (synchronised across processes inside compute)."""
        if self.dim is None:
            raise InputError("CollapseMetrics.compute() before any update(); feed embeddings first.")
        n, eig, gram_eig = self._spectra()
        if eig is None or gram_eig is None:
            raise InputError(f"CollapseMetrics has {n} row(s); at least 2 are needed for a covariance.")
        ctx = Context(eig=eig, n=n, threshold=COLLAPSE_THRESHOLD)
        ctx.gram_eig = gram_eig
        rows = self._lid_rows()
        if rows is not None and rows.shape[0] > 2:
            k = min(self.k, rows.shape[0] - 1)
            ctx.lid_mle, ctx.lid_mom = lid_mle(rows.numpy(), k=k), lid_mom(rows.numpy(), k=k)
            ctx.extra.update({"lid_k": float(k), "lid_points": float(rows.shape[0])})
        ctx.lidar_eig = self._lidar_eig()
        return ctx

    def compute(self) -> dict[str, Tensor]:
        """Every catalogue metric available (0-d float64 tensors), plus n, dim, ``rows_le_dims`` (1.0 when
        N <= D, with a ``ProbeSizeWarning``: the rank metrics are then bounded by N - 1) and ``spectrum``
        (1-D); only ``lidar``, ``n`` = 0 and ``d`` when views were given but no embeddings z."""
        if self.dim is not None and self.with_lidar and float(self.seen) == 0 and not self._has_rows():
            lidar_eig = self._lidar_eig()
            if lidar_eig is not None:
                ctx = Context(eig=np.zeros(1), n=0, lidar_eig=lidar_eig)
                only = {"n": 0.0, "d": float(self.dim), **evaluate(ctx, ["lidar"])}
                return {k: torch.tensor(v, dtype=torch.float64) for k, v in only.items()}
        ctx = self.context()
        small = rows_le_dims(ctx.n, self.dim)
        if small and rank() == 0:
            warnings.warn(rows_warning(ctx.n, int(self.dim or 0)), ProbeSizeWarning, stacklevel=2)
        out = {"n": float(ctx.n), "d": float(self.dim or 0), **ctx.extra, **evaluate(ctx)}
        out["rows_le_dims"] = float(small)
        result = {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}
        result["spectrum"] = torch.from_numpy(ctx.eig.copy())
        return result

    def _has_rows(self) -> bool:
        if self.keeps_rows:
            return bool(len(self.rows))
        return float(self.moments[0, 0]) > 0

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


__all__ = ["CollapseMetrics", "ProbeSizeWarning", "batch_moments", "merge_moments", "scalars"]
