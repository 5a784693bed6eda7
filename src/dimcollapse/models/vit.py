"""Vision Transformer (Dosovitskiy et al. 2021): ViT-Tiny/Small/Base with configurable patch and image size.

Pre-norm blocks x <- x + Attn(LN(x)), x <- x + MLP(LN(x)); the representation r is the final-LN class
token (``pool="cls"``) or the mean of the patch tokens (``pool="mean"``), D = embedding width.
Initialisation: truncated normal (std 0.02) for Linear, patch-embedding conv, class token and positional
embedding; zero biases; LayerNorm ones/zeros.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.models.base import Backbone
from dimcollapse.registry import register

Pool = Literal["cls", "mean"]

# name -> (embedding width, depth, heads)
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
}


class Attention(nn.Module):
    """Multi-head self-attention: softmax(Q K^T / sqrt(d_head)) V with explicit qkv and output Linear."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)  # the attention input projection (W_q; W_k; W_v)
        self.proj = nn.Linear(dim, dim)  # the attention output projection W_o

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attention over the token axis of x [N, T, dim]."""
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class FeedForward(nn.Module):
    """fc2(GELU(fc1(x))) with hidden width mlp_ratio * dim."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Position-wise MLP."""
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One residual attention + MLP step."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(Backbone):
    """ViT: patch embedding (conv p x p, stride p) + class token + learned positions, pre-norm blocks."""

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        in_channels: int = 3,
        image_size: int = 224,
        patch_size: int = 16,
        mlp_ratio: float = 4.0,
        pool: Pool = "cls",
    ) -> None:
        super().__init__()
        if in_channels < 1 or depth < 1 or heads < 1 or dim % heads != 0:
            raise ConfigError(
                f"ViT needs in_channels, depth, heads >= 1 and dim divisible by heads; got in_channels="
                f"{in_channels}, depth={depth}, heads={heads}, dim={dim}."
            )
        if patch_size < 1 or image_size < 1 or image_size % patch_size != 0:
            raise ConfigError(
                f"ViT image_size ({image_size}) must be a positive multiple of patch_size ({patch_size}); "
                "e.g. patch_size=4 for 28x28 or 32x32 images, 16 for 224x224."
            )
        if pool not in ("cls", "mean"):
            raise ConfigError(f"unknown ViT pool '{pool}'. Valid: cls, mean.")
        self.in_channels = in_channels
        self.image_size = image_size
        self.patch_size = patch_size
        self.pool = pool
        self.num_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.num_patches, dim))
        self.blocks = nn.Sequential(*(TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.out_dim = dim
        self._init()

    def _init(self) -> None:
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """r = LN(blocks([cls; patches] + pos))[:, 0] (or the patch-token mean), shape [N, out_dim]."""
        self.check_input(x)
        side = x.shape[-1]
        if x.shape[-2] != side or side > self.image_size or side % self.patch_size:
            raise InputError(
                f"ViT built for {self.image_size}x{self.image_size} images got {tuple(x.shape[-2:])}; "
                "pass image_size= matching the data (smaller square multi-crop views, multiples of "
                f"patch_size = {self.patch_size}, are also accepted)."
            )
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        h = self.norm(self.blocks(torch.cat([cls, tokens], dim=1) + self.positions(side // self.patch_size)))
        return h[:, 0] if self.pool == "cls" else h[:, 1:].mean(dim=1)

    def positions(self, grid: int) -> torch.Tensor:
        """Position embeddings for a grid x grid patch view: bicubic resize of the learned patch grid (DINO's
        interpolation for local crops); the built size returns them unchanged."""
        full = self.image_size // self.patch_size
        if grid == full:
            return self.pos_embed
        patch = self.pos_embed[:, 1:].reshape(1, full, full, -1).permute(0, 3, 1, 2)
        patch = F.interpolate(patch, size=(grid, grid), mode="bicubic", align_corners=False)
        return torch.cat([self.pos_embed[:, :1], patch.flatten(2).transpose(1, 2)], dim=1)


def _vit(
    size: str, in_channels: int, image_size: int, patch_size: int, depth: int | None, pool: Pool
) -> VisionTransformer:
    dim, default_depth, heads = VIT_SIZES[size]
    return VisionTransformer(
        dim, default_depth if depth is None else depth, heads, in_channels, image_size, patch_size, pool=pool
    )


@register("backbone", "vit_tiny")
def vit_tiny(
    in_channels: int = 3,
    image_size: int = 224,
    patch_size: int = 16,
    depth: int | None = None,
    pool: Pool = "cls",
) -> VisionTransformer:
    """ViT-Tiny: width 192, 12 blocks, 3 heads (Touvron et al. 2021), D = 192."""
    return _vit("tiny", in_channels, image_size, patch_size, depth, pool)


@register("backbone", "vit_small")
def vit_small(
    in_channels: int = 3,
    image_size: int = 224,
    patch_size: int = 16,
    depth: int | None = None,
    pool: Pool = "cls",
) -> VisionTransformer:
    """ViT-Small: width 384, 12 blocks, 6 heads, D = 384."""
    return _vit("small", in_channels, image_size, patch_size, depth, pool)


@register("backbone", "vit_base")
def vit_base(
    in_channels: int = 3,
    image_size: int = 224,
    patch_size: int = 16,
    depth: int | None = None,
    pool: Pool = "cls",
) -> VisionTransformer:
    """ViT-Base: width 768, 12 blocks, 12 heads (Dosovitskiy et al. 2021), D = 768."""
    return _vit("base", in_channels, image_size, patch_size, depth, pool)
