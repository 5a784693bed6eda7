"""The default training step: encode every view, then the objective (SPEC section 4)."""

from __future__ import annotations

from dimcollapse import contracts
from dimcollapse.errors import ConfigError
from dimcollapse.registry import register
from dimcollapse.training.steps.base import encode_views, pairwise_loss


@register("step", "views")
class ViewsStep:
    """Every view through f and g (views of one size in one batch), the global views through the momentum
    target when the objective has one; L_ssl = the objective over every pair of views (once with all views
    for a multi-view objective)."""

    def check(self, nets: contracts.Networks, n_global: int, n_local: int) -> None:
        """A pairwise objective with a momentum target sees no local crops (the target has global views)."""
        if n_local and nets.uses_momentum_target and not nets.objective.multi_view:
            name = getattr(nets.objective, "name", type(nets.objective).__name__)
            raise ConfigError(
                f"objective {name} compares view pairs with a momentum target, which sees the global views "
                "only: drop data.views.overrides.local_crops (multi-crop is for dino, swav)."
            )

    def __call__(
        self, batch: contracts.StepBatch, nets: contracts.Networks, values: contracts.StepValues
    ) -> contracts.StepResult:
        """(L_ssl, r of every view, the target's r of the global views)."""
        rs, zs = encode_views(batch.views, nets.encode)
        tr = tz = None
        if nets.uses_momentum_target:  # the target sees the global views only
            tr, tz = encode_views(batch.views[: batch.n_global], nets.encode_target)
        return contracts.StepResult(pairwise_loss(nets.objective, zs, tz, values.objective), rs, tr)
