"""Backbones: output shapes, out_dim, parameter counts against closed forms, weight_layers order."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.registry import build, names


def conv_params(k: int, c_in: int, c_out: int) -> int:
    return k * k * c_in * c_out


def bn_params(c: int) -> int:
    return 2 * c


def resnet_closed_form(kind: str, layers: tuple[int, ...], stem: str, in_ch: int = 3) -> int:
    """Parameter count of a ResNet without classifier from the layer formulas (He et al. 2016)."""
    k = 7 if stem == "imagenet" else 3
    total = conv_params(k, in_ch, 64) + bn_params(64)
    c_in = 64
    for i, (n, planes) in enumerate(zip(layers, (64, 128, 256, 512), strict=True)):
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            if kind == "basic":
                c_out = planes
                total += conv_params(3, c_in, planes) + bn_params(planes)
                total += conv_params(3, planes, planes) + bn_params(planes)
            else:
                c_out = 4 * planes
                total += conv_params(1, c_in, planes) + bn_params(planes)
                total += conv_params(3, planes, planes) + bn_params(planes)
                total += conv_params(1, planes, c_out) + bn_params(c_out)
            if stride != 1 or c_in != c_out:
                total += conv_params(1, c_in, c_out) + bn_params(c_out)
            c_in = c_out
    return total


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


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


def test_registered_names() -> None:
    assert {"resnet18", "resnet34", "resnet50", "small_resnet", "mlp"} <= set(names("backbone"))


@pytest.mark.parametrize(
    ("name", "kw", "shape", "dim"),
    [
        ("small_resnet", {"in_channels": 1}, (3, 1, 28, 28), 128),
        ("small_resnet", {"in_channels": 3, "widths": (8, 16), "blocks": (1, 2)}, (2, 3, 32, 32), 16),
        ("resnet18", {"stem": "cifar", "width": 0.25}, (2, 3, 32, 32), 128),
        ("resnet18", {"stem": "imagenet", "width": 0.25, "in_channels": 1}, (2, 1, 64, 64), 128),
        ("resnet50", {"stem": "cifar", "width": 0.125}, (2, 3, 16, 16), 256),
        ("mlp", {"in_channels": 1, "image_size": 8, "hidden_dims": (32, 24)}, (5, 1, 8, 8), 24),
    ],
)
def test_output_shape_and_out_dim(name: str, kw: dict, shape: tuple[int, ...], dim: int) -> None:
    net = build("backbone", name, **kw)
    r = net(torch.randn(*shape))
    assert net.out_dim == dim
    assert r.shape == (shape[0], dim)
    assert torch.isfinite(r).all()


@pytest.mark.parametrize(
    ("name", "kind", "layers", "stem", "torchvision_count"),
    [
        ("resnet18", "basic", (2, 2, 2, 2), "imagenet", 11_689_512 - 513_000),
        ("resnet18", "basic", (2, 2, 2, 2), "cifar", None),
        ("resnet34", "basic", (3, 4, 6, 3), "imagenet", 21_797_672 - 513_000),
        ("resnet50", "bottleneck", (3, 4, 6, 3), "imagenet", 25_557_032 - 2_049_000),
    ],
)
def test_resnet_parameter_counts(name: str, kind: str, layers: tuple, stem: str, torchvision_count) -> None:
    net = build("backbone", name, stem=stem)
    expected = resnet_closed_form(kind, layers, stem)
    assert n_params(net) == expected
    if torchvision_count is not None:  # published torchvision counts minus the 1000-class fc layer
        assert expected == torchvision_count
    assert net.out_dim == (2048 if kind == "bottleneck" else 512)


def test_cifar_stem_keeps_resolution_imagenet_stem_divides_by_four() -> None:
    x = torch.randn(1, 3, 32, 32)
    for stem, size in (("cifar", 32), ("imagenet", 8)):
        net = build("backbone", "resnet18", stem=stem, width=0.125).eval()
        feats = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        assert feats.shape[-1] == size


@pytest.mark.parametrize(
    ("name", "kw", "shape"),
    [
        ("small_resnet", {"in_channels": 1, "blocks": (1, 2, 1, 1)}, (2, 1, 12, 12)),
        ("resnet18", {"stem": "cifar", "width": 0.125}, (2, 3, 8, 8)),
        ("resnet50", {"stem": "imagenet", "width": 0.0625}, (2, 3, 32, 32)),
        ("mlp", {"image_size": 4, "hidden_dims": (8, 8, 6)}, (3, 1, 4, 4)),
    ],
)
def test_weight_layers_follow_forward_order_and_cover_all_matrices(name: str, kw: dict, shape) -> None:
    net = build("backbone", name, **kw)
    layers = net.weight_layers()
    names_ = [n for n, _ in layers]
    assert names_ == forward_call_order(net, torch.randn(*shape))
    assert net.last_layer_name == names_[-1]
    # every weight matrix (ndim >= 2) of the network belongs to exactly one listed layer
    listed = {id(m.weight) for _, m in layers}
    matrices = {id(p) for p in net.parameters() if p.dim() >= 2}
    assert listed == matrices
    modules = dict(net.named_modules())
    assert all(modules[n] is m for n, m in layers)


def test_last_layer_is_last_residual_conv() -> None:
    assert build("backbone", "resnet18").last_layer_name == "layer4.1.conv2"
    assert build("backbone", "resnet50", width=0.0625).last_layer_name == "layer4.2.conv3"
    # one block per stage: the shortcut conv of layer4.0 must not be taken as the last layer
    assert build("backbone", "small_resnet").last_layer_name == "layer4.0.conv2"


def test_width_multiplier_scales_out_dim_and_convs() -> None:
    net = build("backbone", "resnet34", width=0.5, stem="cifar")
    assert net.out_dim == 256
    assert net.conv1.out_channels == 32


def test_zero_init_residual_makes_blocks_identity_like() -> None:
    net = build("backbone", "resnet18", stem="cifar", width=0.125, zero_init_residual=True)
    zeroed = [m.bn2.weight for m in net.modules() if type(m).__name__ == "BasicBlock"]
    assert len(zeroed) == 8 and all(torch.count_nonzero(w) == 0 for w in zeroed)
    plain = build("backbone", "resnet18", stem="cifar", width=0.125)
    assert torch.count_nonzero(plain.layer1[0].bn2.weight) > 0


def test_init_weights_kaiming_fan_out() -> None:
    net = build("backbone", "resnet18", stem="cifar")
    w = net.layer3[1].conv1.weight  # 256 out channels, 3x3: fan_out = 2304
    expected_std = (2.0 / (256 * 9)) ** 0.5
    assert abs(w.std().item() / expected_std - 1) < 0.02


@pytest.mark.parametrize("name", ["small_resnet", "resnet50"])
def test_channels_last_computes_the_same_function(name: str) -> None:
    kw = {"in_channels": 3} if name == "small_resnet" else {"width": 0.0625, "stem": "cifar"}
    # float64 so that only the layout differs, not float32 summation order amplified by train-mode BN
    fast = build("backbone", name, channels_last=True, **kw).double()
    plain = build("backbone", name, channels_last=False, **kw).double()
    plain.load_state_dict(fast.state_dict())
    assert fast.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.conv1.weight.is_contiguous()
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    r_fast, r_plain = fast(x), plain(x)
    torch.testing.assert_close(r_fast, r_plain, atol=1e-10, rtol=1e-9)
    r_fast.square().sum().backward()
    r_plain.square().sum().backward()
    torch.testing.assert_close(fast.conv1.weight.grad, plain.conv1.weight.grad, atol=1e-9, rtol=1e-8)


def test_gradients_reach_every_parameter() -> None:
    net = build("backbone", "small_resnet", in_channels=1)
    net(torch.randn(4, 1, 16, 16)).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_bad_inputs_and_config() -> None:
    net = build("backbone", "small_resnet", in_channels=1)
    with pytest.raises(InputError, match="in_channels"):
        net(torch.randn(2, 3, 28, 28))
    with pytest.raises(InputError, match="float"):
        net(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(InputError, match="image_size"):
        build("backbone", "mlp", image_size=28)(torch.randn(2, 1, 32, 32))
    with pytest.raises(ConfigError, match="stem"):
        build("backbone", "resnet18", stem="tiny")
    with pytest.raises(ConfigError, match="width"):
        build("backbone", "resnet18", width=0)
    with pytest.raises(ConfigError, match="Valid options"):
        build("backbone", "resnet18", depth=3)
    with pytest.raises(ConfigError, match="block counts"):
        build("backbone", "small_resnet", widths=(8, 16), blocks=(1,))
