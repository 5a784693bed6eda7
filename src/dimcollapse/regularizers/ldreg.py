"""LDReg and MinLID (LDReg paper, Huang et al. ICLR 2024): regularize the local intrinsic dimension of r."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from dimcollapse.diagnostics.engine.knn import knn_distances
from dimcollapse.diagnostics.engine.knn_backends import BackendLike, resolve_backend
from dimcollapse.diagnostics.lid import lid_from_distances
from dimcollapse.errors import ConfigError, InputError
from dimcollapse.registry import register
from dimcollapse.regularizers.base import Regularizer
from dimcollapse.utils.distributed import gather_detached, sum_detached, world_size

DEFAULT_K = 64
ESTIMATORS = ("mom", "mle")
FORMS = ("l1", "l2")


def knn_excluding_self(
    queries: torch.Tensor, reference: torch.Tensor, k: int, backend: BackendLike = "exact"
) -> torch.Tensor:
    """Ascending distances (grad through the queries) from each query to its k nearest reference rows,
    the reference holding each query's own detached copy: the k + 1 nearest minus the first (the self
    match at distance 0; if a duplicate is dropped instead, the remaining distances are the same)."""
    dist = knn_distances(queries, reference, k=k + 1, backend=backend)
    assert isinstance(dist, torch.Tensor)
    return dist[:, 1:]


@register("regularizer", "ldreg")
class LDReg(Regularizer):
    """L1: -beta * mean_i ln LID_i; L2: -beta * sqrt(mean_i (ln LID_i)^2) (LDReg paper, SPEC 4).

    Queries are every view's representations r (with gradient); the reference is all views of the batch,
    detached, gathered over processes, plus the detached ``reference`` features (BYOL target) when given.
    Under torch.distributed the returned value is the global term and the gradient on the local queries
    is ``world_size`` times the global gradient, so that DDP's gradient averaging gives the exact one.
    """

    target: ClassVar[Literal["weights", "features"]] = "features"
    default_weight = 0.01
    default_warmup: ClassVar[str] = "off"
    skip_when_off: ClassVar[bool] = True  # the k-NN search is skipped while the coefficient is 0
    sign: ClassVar[float] = -1.0

    def __init__(
        self,
        k: int | None = None,
        estimator: str = "mom",
        form: str = "l1",
        knn_backend: str = "exact",
    ) -> None:
        super().__init__()
        self.knn_backend = resolve_backend(knn_backend)  # the engine that finds the reference neighbours
        if estimator not in ESTIMATORS:
            raise ConfigError(
                f"unknown LID estimator '{estimator}'. Valid estimators: {', '.join(ESTIMATORS)}."
            )
        if form not in FORMS:
            raise ConfigError(f"unknown LDReg form '{form}'. Valid forms: {', '.join(FORMS)}.")
        if k is not None and (int(k) != k or k < 2):
            raise ConfigError(f"LDReg k must be an integer >= 2, got {k}.")
        self.k = None if k is None else int(k)
        self.estimator = estimator
        self.form = form

    def neighbours(self, reference_size: int) -> int:
        """k used for a reference of ``reference_size`` rows: the explicit k, or 64 clamped to size - 2."""
        if self.k is None:
            if reference_size < 4:
                raise InputError(f"LDReg needs a reference batch of at least 4 rows, got {reference_size}.")
            return min(DEFAULT_K, reference_size - 2)
        if self.k >= reference_size:
            raise ConfigError(
                f"LDReg k = {self.k} needs more than k reference points, but the reference batch has "
                f"{reference_size} (all views x batch x processes). Lower k or leave it unset (default "
                f"{DEFAULT_K}, clamped to batch - 2)."
            )
        return self.k

    def forward(
        self, features: list[torch.Tensor], reference: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """sign * (mean ln LID  |  root mean square of ln LID) over all views' samples."""
        if not features:
            raise InputError("LDReg needs at least one batch of representations.")
        queries = torch.cat([f.flatten(1) for f in features], dim=0)
        local_ref = torch.cat([queries.detach()] + [r.detach().flatten(1) for r in reference or []], dim=0)
        size = world_size()
        ref = gather_detached(local_ref)
        k = self.neighbours(ref.shape[0])
        dist = knn_excluding_self(queries, ref, k, self.knn_backend)
        lid = lid_from_distances(dist, method=self.estimator)  # type: ignore[arg-type]
        log_lid = torch.log(lid.clamp_min(1e-12))
        power = log_lid if self.form == "l1" else log_lid.pow(2)
        local_sum = power.sum()
        n_local = local_sum.new_tensor(float(power.numel()))
        totals = sum_detached(torch.stack([local_sum.detach(), n_local, log_lid.detach().sum()]))
        count = totals[1]
        mean = totals[0] / count
        # value: the global mean; gradient: size * d(global mean)/d(local queries) (DDP averages gradients)
        surrogate = mean + (local_sum - local_sum.detach()) * size / count
        if self.form == "l1":
            stat = surrogate
        else:
            root = torch.sqrt(mean.clamp_min(1e-12))
            stat = root + (surrogate - mean) / (2.0 * root)
        log_mean = totals[2] / count
        return self.record(self.sign * stat, lid_geomean=torch.exp(log_mean), k=log_mean.new_tensor(float(k)))


@register("regularizer", "minlid")
class MinLID(LDReg):
    """MinLID: LDReg with the sign flipped, +beta * mean ln LID (drives collapse; LDReg paper table 13)."""

    sign: ClassVar[float] = 1.0
