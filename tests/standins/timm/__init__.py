"""Test stand-in for timm (see tests/standins/README.md): ``create_model`` for resnet18 and ViTs with timm's
parameter names, ``pretrained_cfg`` (input size, mean, std) and local weights through
``pretrained_cfg_overlay=dict(file=...)`` loaded strictly, as timm loads a checkpoint file."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)) (timm's names)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        self.attn.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, 4 * dim)
        self.mlp.fc2 = nn.Linear(4 * dim, dim)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (
            self.attn.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        )
        a = nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        x = x + self.attn.proj(a)
        return x + self.mlp.fc2(nn.functional.gelu(self.mlp.fc1(self.norm2(x))))


class VisionTransformer(nn.Module):
    """timm's ViT layout: patch_embed.proj, cls_token, pos_embed, blocks, norm, head on the class token."""

    def __init__(
        self, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int, num_classes: int
    ):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, embed_dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (img_size // patch_size) ** 2 + 1, embed_dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes else nn.Identity()
        self.num_prefix_tokens = 1  # timm's count of class / register tokens before the patch tokens

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        return self.norm(self.blocks(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x)[:, 0])


def _resnet18(num_classes: int = 1000) -> nn.Module:
    from torchvision.models import resnet18  # the stand-in beside this package (same names as timm's)

    return resnet18(num_classes=num_classes)


def create_model(
    model_name: str,
    pretrained: bool = False,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    num_classes: int = 1000,
    **kwargs: Any,
) -> nn.Module:
    """resnet18 or vit_tiny_patch16_224 (img_size, patch_size, embed_dim, depth, num_heads overridable)."""
    size = 224
    if model_name == "resnet18":
        model = _resnet18(num_classes)
    elif model_name == "vit_tiny_patch16_224":
        vit = {"img_size": 224, "patch_size": 16, "embed_dim": 192, "depth": 12, "num_heads": 3, **kwargs}
        size = vit["img_size"]
        model = VisionTransformer(num_classes=num_classes, **vit)
    else:
        raise RuntimeError(f"Unknown model ({model_name})")
    model.pretrained_cfg = {"input_size": (3, size, size), "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    if pretrained:
        file = (pretrained_cfg_overlay or {}).get("file")
        if file is None:
            raise RuntimeError("no network here: pass pretrained_cfg_overlay=dict(file=...)")
        if str(file).endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(file)
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model
