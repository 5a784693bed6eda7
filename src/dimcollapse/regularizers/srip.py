"""SRIP (Bansal et al. 2018; OR paper): sum over layers of sigma_max(G - I) by power iteration."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dimcollapse.errors import ConfigError
from dimcollapse.registry import register
from dimcollapse.regularizers.gram import gram_deviation_norm, gram_minus_identity_matvec, weight_matrix
from dimcollapse.regularizers.layers import Heads
from dimcollapse.regularizers.weights import WeightLayerRegularizer


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm().clamp_min(1e-30)


def power_sigma_max(
    weight: torch.Tensor, steps: int, start: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """sigma_max(G - I) (G the smaller Gram of W) after ``steps`` power steps; returns (sigma, unit vector).

    The steps run without gradient; the value ||(G - I) v|| of the last step carries the gradient
    (v held fixed), as in SRIP. G - I is symmetric, so its top singular value is its largest |eigenvalue|.
    """
    mat = weight_matrix(weight)
    size = min(mat.shape)
    v = start if start is not None else torch.randn(size, dtype=mat.dtype, device=mat.device)
    with torch.no_grad():
        v = _unit(v.to(device=mat.device, dtype=mat.dtype))
        md = mat.detach()
        for _ in range(steps):
            v = _unit(gram_minus_identity_matvec(md, v))
    return gram_deviation_norm(weight, v)


@register("regularizer", "srip")
class SRIP(WeightLayerRegularizer):
    """SRIP: sum_l sigma_max(G_l - I) (or its square), G_l the smaller Gram (SPEC 4).

    ``power_steps`` power iterations per call; ``persistent=True`` keeps each layer's vector between calls
    (warm start, converges over training), ``False`` draws a random start every call. The kept vectors are
    part of the state_dict (``_extra_state``), so a resumed run continues from the same vectors.
    """

    default_weight = 1e-4

    def __init__(
        self,
        layers: str | Sequence[str] | None = None,
        include_projector: Heads = False,
        include_predictor: Heads = False,
        power_steps: int = 2,
        persistent: bool = True,
        squared: bool = False,
        encoder: str | None = None,
    ) -> None:
        super().__init__(layers, include_projector, include_predictor, encoder)
        if int(power_steps) != power_steps or power_steps < 0:
            raise ConfigError(f"power_steps must be an integer >= 0, got {power_steps}.")
        self.power_steps = int(power_steps)
        self.persistent = bool(persistent)
        self.squared = bool(squared)
        self._vectors: dict[str, torch.Tensor] = {}

    def get_extra_state(self) -> dict[str, torch.Tensor]:
        """The per-layer power-iteration vectors, saved with the module's state_dict."""
        return {name: v.detach().clone() for name, v in self._vectors.items()}

    def set_extra_state(self, state: object) -> None:
        """Restore the vectors saved by ``get_extra_state`` (layer name -> unit vector)."""
        if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) and v.dim() == 1 for k, v in state.items()
        ):
            raise ConfigError(
                "srip: the checkpoint's SRIP state is not a mapping of layer name -> power-iteration vector; "
                "the checkpoint is damaged or from another program, train from scratch or use its own config."
            )
        self._vectors = {k: v.detach().clone() for k, v in state.items()}

    def layer_term(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """sigma_max(G - I) (squared when asked) by power iteration on the smaller Gram."""
        start = self._vectors.get(name) if self.persistent else None
        sigma, vec = power_sigma_max(weight, self.power_steps, start)
        if self.persistent:
            self._vectors[name] = vec
        return sigma * sigma if self.squared else sigma
