"""The prediction MLP of BYOL (Grill et al. 2020) and SimSiam (Chen & He 2021): dim -> hidden -> dim."""

from __future__ import annotations

from torch import Tensor, nn

from dimcollapse.errors import ConfigError
from dimcollapse.utils.batchnorm import GlobalBatchNorm1d


class Predictor(nn.Module):
    """q(z) = W2 ReLU(BN(W1 z + b1)) + b2; BN uses the global batch under DDP when ``sync_bn``."""

    def __init__(self, dim: int | None, hidden_dim: int, sync_bn: bool = True) -> None:
        super().__init__()
        if dim is None:
            raise ConfigError(
                "predictor: dim (the embedding size, the projector's out_dim) is required; pass dim=..."
            )
        for key, value in (("dim", dim), ("hidden_dim", hidden_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"predictor: {key} must be a positive integer, got {value!r}.")
        norm = GlobalBatchNorm1d(hidden_dim) if sync_bn else nn.BatchNorm1d(hidden_dim)
        self.net = nn.Sequential(
            nn.Linear(dim, hidden_dim), norm, nn.ReLU(inplace=True), nn.Linear(hidden_dim, dim)
        )
        self.dim = dim

    def forward(self, z: Tensor) -> Tensor:
        """The prediction q(z) of the other view's (target) embedding."""
        return self.net(z)
