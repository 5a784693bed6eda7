"""ViT backbones: parameter counts against the closed form, attention against torch's reference, layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.models.vit import Attention
from dimcollapse.registry import build


def forward_call_order(net: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of Conv/Linear modules in the order forward actually calls them."""
    order: list[str] = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=name: order.append(name))
        for name, m in net.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    net(x)
    for h in hooks:
        h.remove()
    return order


def vit_closed_form(dim: int, depth: int, in_ch: int = 3, image: int = 224, patch: int = 16) -> int:
    """Parameters of a ViT without head: patch conv, cls, positions, depth x block, final LN."""
    n_tokens = (image // patch) ** 2 + 1
    patch_embed = in_ch * patch * patch * dim + dim
    block = (
        2 * (2 * dim) + (dim * 3 * dim + 3 * dim) + (dim * dim + dim) + 2 * (dim * 4 * dim) + 4 * dim + dim
    )
    return patch_embed + dim + n_tokens * dim + depth * block + 2 * dim


@pytest.mark.parametrize(
    ("name", "dim", "published"),
    # published timm/DeiT counts of the 224/16 models minus their 1000-class head
    [
        ("vit_tiny", 192, 5_717_416 - 193_000),
        ("vit_small", 384, 22_050_664 - 385_000),
        ("vit_base", 768, 86_567_656 - 769_000),
    ],
)
def test_parameter_counts(name: str, dim: int, published: int) -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        net = build("backbone", name)
    assert sum(p.numel() for p in net.parameters()) == vit_closed_form(dim, 12) == published
    assert net.out_dim == dim
    assert net.last_layer_name == "blocks.11.mlp.fc2"


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_small_vit_forward_shape(pool: str) -> None:
    net = build("backbone", "vit_tiny", in_channels=1, image_size=28, patch_size=7, depth=2, pool=pool)
    r = net(torch.randn(3, 1, 28, 28))
    assert r.shape == (3, 192) and torch.isfinite(r).all()
    assert net.num_patches == 16
    assert sum(p.numel() for p in net.parameters()) == vit_closed_form(192, 2, in_ch=1, image=28, patch=7)


def test_weight_layers_include_attention_and_follow_forward_order() -> None:
    net = build("backbone", "vit_small", image_size=16, patch_size=8, depth=3)
    names = [n for n, _ in net.weight_layers()]
    assert names == forward_call_order(net, torch.randn(2, 3, 16, 16))
    assert names[0] == "patch_embed"
    for b in range(3):
        assert names[1 + 4 * b : 5 + 4 * b] == [f"blocks.{b}.attn.{x}" for x in ("qkv", "proj")] + [
            f"blocks.{b}.mlp.{x}" for x in ("fc1", "fc2")
        ]
    assert net.last_layer_name == names[-1] == "blocks.2.mlp.fc2"
    listed = {id(m.weight) for _, m in net.weight_layers()}
    matrices = {
        id(p) for n, p in net.named_parameters() if p.dim() >= 2 and n not in ("cls_token", "pos_embed")
    }
    assert listed == matrices


def test_attention_matches_torch_multihead_attention() -> None:
    dim, heads = 24, 4
    ours = Attention(dim, heads)
    ref = nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, 5, dim)
    expected, _ = ref(x, x, x, need_weights=False)
    torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter() -> None:
    net = build("backbone", "vit_tiny", image_size=8, patch_size=4, depth=1)
    net(torch.randn(2, 3, 8, 8)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_bad_configuration_and_input() -> None:
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        build("backbone", "vit_tiny", image_size=30, patch_size=4)
    with pytest.raises(ConfigError, match="pool"):
        build("backbone", "vit_tiny", image_size=8, patch_size=4, depth=1, pool="max")
    net = build("backbone", "vit_tiny", image_size=8, patch_size=4, depth=1)
    with pytest.raises(InputError, match="image_size"):
        net(torch.randn(1, 3, 16, 16))
    with pytest.raises(InputError, match="in_channels"):
        net(torch.randn(1, 1, 8, 8))


def test_smaller_multicrop_views_use_interpolated_positions() -> None:
    """Local crops (DINO): a smaller view gets the learned position grid resized bicubically."""
    net = build("backbone", "vit_tiny", image_size=16, patch_size=4, depth=1).eval()
    x = torch.randn(2, 3, 8, 8)
    pos = net.positions(2)
    assert pos.shape == (1, 1 + 4, net.out_dim)
    torch.testing.assert_close(pos[:, 0], net.pos_embed[:, 0])
    grid = net.pos_embed[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(2, 2), mode="bicubic").flatten(2).transpose(1, 2)
    torch.testing.assert_close(pos[:, 1:], expected)
    assert net(x).shape == (2, net.out_dim) and net.positions(4) is net.pos_embed
    with pytest.raises(InputError, match="multiples of patch_size"):
        net(torch.randn(1, 3, 6, 6))
