"""Batched view augmentation: shapes, device, determinism, identity cases checked against closed forms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dimcollapse.data import views_ops as ops
from dimcollapse.data.views import ViewAugment, eval_transform
from dimcollapse.errors import ConfigError, InputError

OFF = {"hflip_p": 0.0, "jitter_p": 0.0, "grayscale_p": 0.0, "crop_scale": [1, 1], "crop_ratio": [1, 1]}


def batch(n: int = 16, c: int = 3, s: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, s, s), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize(
    ("recipe", "c", "s"),
    [
        ("simclr", 1, 28),
        ("simclr", 3, 32),
        ("byol", 3, 32),
        ("byol", 1, 28),
        ("simclr", 3, 96),
        ("byol", 3, 96),
    ],
)
def test_shapes_dtype_device_and_views_differ(recipe: str, c: int, s: int) -> None:
    x = batch(8, c, s + 4)  # input larger than image_size: crops are resized to image_size
    aug = ViewAugment(recipe, image_size=s, channels=c, seed=0)
    views = aug(x)
    assert len(views) == 2
    ref = aug.eval_transform(x)
    for v in views:
        assert v.shape == (8, c, s, s) and v.dtype == torch.float32 and v.device == x.device
        assert torch.isfinite(v).all()
        assert (v - ref).abs().mean() > 0.05  # a view is not the input
    assert not torch.allclose(views[0], views[1])
    raw = aug.denormalize(views[0])
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


def test_n_views_and_seed_determinism() -> None:
    x = batch()
    a = ViewAugment("simclr", 32, 3, n_views=4, seed=7)(x)
    b = ViewAugment("simclr", 32, 3, n_views=4, seed=7)(x)
    c = ViewAugment("simclr", 32, 3, n_views=4, seed=8)(x)
    assert len(a) == 4
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    torch.manual_seed(3)
    d = ViewAugment({"name": "byol", "n_views": 3}, 32, 3)(x)
    torch.manual_seed(3)
    e = ViewAugment({"name": "byol", "n_views": 3}, 32, 3)(x)
    assert len(d) == 3 and all(torch.equal(u, v) for u, v in zip(d, e, strict=True))


def test_none_recipe_is_normalisation_only() -> None:
    x = batch(4, 3, 32)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.2)
    views = ViewAugment("none", 32, 3, mean=mean, std=std, n_views=3)(x)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    expect = (x.double() / 255 - m) / s
    assert len(views) == 3
    for v in views:
        torch.testing.assert_close(v.double(), expect, atol=1e-5, rtol=0)


def test_dataset_stats_by_name_and_eval_transform() -> None:
    x = batch(2, 1, 28)
    v = ViewAugment("none", 28, 1, dataset="fashion_mnist")(x)[0]
    torch.testing.assert_close(v, (x.float() / 255 - 0.2860) / 0.3530, atol=1e-5, rtol=0)
    torch.testing.assert_close(eval_transform(x, dataset="fashion_mnist"), v)
    small = eval_transform(batch(2, 3, 32), mean=0, std=1, image_size=16)
    assert small.shape == (2, 3, 16, 16) and small.min() >= 0 and small.max() <= 1


def test_full_crop_without_flip_is_identity_and_flip_mirrors() -> None:
    x = batch(6, 3, 32)
    v = ViewAugment({"name": "simclr", **OFF}, 32, 3, mean=0, std=1)(x)[0]
    torch.testing.assert_close(v, x.float() / 255, atol=1e-5, rtol=0)
    f = ViewAugment({"name": "simclr", **OFF, "hflip_p": 1.0}, 32, 3, mean=0, std=1)(x)[0]
    torch.testing.assert_close(f, x.float().flip(-1) / 255, atol=1e-5, rtol=0)


def test_crop_box_matches_integer_crop() -> None:
    x = batch(1, 1, 16).float()
    box = torch.tensor([[4.0 + 4, 2.0 + 4, 8.0, 8.0]], dtype=torch.float64)  # 8x8 crop at x0=4, y0=2
    out = ops.resized_crop_flip(x, 8, ops.crop_theta(box, 16, 16, torch.tensor([False])))
    torch.testing.assert_close(out, x[:, :, 2:10, 4:12], atol=1e-4, rtol=0)


def test_crop_boxes_respect_scale_ratio_and_bounds() -> None:
    g = torch.Generator().manual_seed(0)
    boxes = ops.sample_crop_boxes(2000, 32, 32, (0.2, 0.6), (0.75, 4 / 3), g)
    cx, cy, w, h = boxes.unbind(1)
    area = w * h / 1024
    assert area.min() >= 0.2 - 1e-9 and area.max() <= 0.6 + 1e-9
    assert (w / h).min() >= 0.75 - 1e-9 and (w / h).max() <= 4 / 3 + 1e-9
    assert (cx - w / 2).min() >= 0 and (cx + w / 2).max() <= 32 and (cy + h / 2).max() <= 32
    assert abs(area.mean().item() - 0.4) < 0.02  # U(0.2, 0.6) has mean 0.4


def test_grayscale_and_hue_rotation_against_closed_forms() -> None:
    x = batch(5, 3, 8)
    g = ViewAugment({"name": "simclr", **OFF, "grayscale_p": 1.0}, 8, 3, mean=0, std=1)(x)[0]
    luma = (x.double() / 255 * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    torch.testing.assert_close(g.double(), luma.expand(-1, 3, -1, -1), atol=1e-5, rtol=0)
    rot = ops.hue_rotation(torch.tensor([2 * math.pi / 3, 0.3], dtype=torch.float64))
    # a third of a turn about the grey axis permutes the RGB channels; every rotation is orthogonal
    torch.testing.assert_close(
        rot[0] @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
        torch.tensor([0.0, 1, 0], dtype=torch.float64),
        atol=1e-12,
        rtol=0,
    )
    torch.testing.assert_close(rot[1] @ rot[1].T, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)


def test_color_affine_contrast_brightness_match_sequential_ops() -> None:
    torch.manual_seed(1)
    x = torch.rand(4, 3, 6, 6, dtype=torch.float64) * 0.5 + 0.2
    g = torch.Generator().manual_seed(0)
    cmap = ops.color_affine(4, 3, 0.3, 0.3, 0.3, 0.0, 1.0, 0.0, g, order=[0, 1, 2])
    g = torch.Generator().manual_seed(0)
    ops.bernoulli(4, 1.0, g)
    fb = ops.uniform(4, 0.7, 1.3, g)[:, None, None, None]
    fc = ops.uniform(4, 0.7, 1.3, g)[:, None, None, None]
    fs = ops.uniform(4, 0.7, 1.3, g)[:, None, None, None]
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(1, 3, 1, 1)
    y = x * fb
    y = fc * y + (1 - fc) * (y * w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    y = fs * y + (1 - fs) * (y * w).sum(1, keepdim=True)
    torch.testing.assert_close(ops.apply_affine(x, cmap), y.clamp(0, 1), atol=1e-12, rtol=0)
    cmap = ops.color_affine(
        4, 3, 0.3, 0.3, 0.3, 0.0, 1.0, 0.0, torch.Generator().manual_seed(0), order=[2, 1, 0]
    )
    f1, f2, f3 = fb, fc, fs  # the same draws, now used by saturation, contrast, brightness in turn
    z = f1 * x + (1 - f1) * (x * w).sum(1, keepdim=True)
    z = f2 * z + (1 - f2) * (z * w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    z = f3 * z
    torch.testing.assert_close(ops.apply_affine(x, cmap), z.clamp(0, 1), atol=1e-12, rtol=0)


def test_blur_preserves_constant_images_and_smooths_noise() -> None:
    x = torch.full((3, 1, 12, 12), 0.4)
    x[2] = torch.rand(1, 12, 12)
    mask = torch.tensor([True, False, True])
    y = ops.gaussian_blur(x, mask, (1.0, 1.0), 5, None)
    torch.testing.assert_close(y[0], x[0])
    assert torch.equal(y[1], x[1])
    assert y[2].var() < x[2].var() * 0.5
    t = torch.arange(-2, 3, dtype=torch.float64)
    k = torch.exp(-(t**2) / 2)
    k = (k / k.sum()).float()
    ref = F.conv2d(F.conv2d(x[2:3], k.view(1, 1, 1, 5)), k.view(1, 1, 5, 1))
    torch.testing.assert_close(y[2:3, :, 2:-2, 2:-2], ref, atol=1e-6, rtol=0)


def test_solarize_closed_form() -> None:
    x = torch.linspace(0, 1, 11).view(1, 1, 1, 11).repeat(2, 1, 1, 1)
    y = ops.solarize(x, torch.tensor([True, False]), 0.5)
    torch.testing.assert_close(y[0], torch.where(x[0] >= 0.5, 1 - x[0], x[0]))
    assert torch.equal(y[1], x[1])


def test_bad_input_and_config() -> None:
    aug = ViewAugment("simclr", 28, 1)
    with pytest.raises(InputError, match="channels"):
        aug(batch(2, 3, 28))
    with pytest.raises(InputError):
        aug(torch.zeros(28, 28, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="Valid recipes"):
        ViewAugment("moco", 28, 1)
    with pytest.raises(ConfigError, match="Valid: crop_scale"):
        ViewAugment({"name": "simclr", "blurr_p": 0.5}, 28, 1)
    with pytest.raises(ConfigError, match="probability"):
        ViewAugment("simclr", 28, 1, params={"jitter_p": 1.5})
    with pytest.raises(ConfigError, match="3 channels"):
        ViewAugment("simclr", 32, 3, mean=(0.5, 0.5))


def test_byol_views_are_asymmetric_and_overridable() -> None:
    aug = ViewAugment("byol", 96, 3)
    assert [p.blur_p for p in aug.view_params] == [1.0, 0.1]
    assert [p.solarize_p for p in aug.view_params] == [0.0, 0.2]
    aug2 = ViewAugment("byol", 96, 3, params={"views": [{"blur_p": 0.3}, {"solarize_p": 0.5}]})
    assert [p.blur_p for p in aug2.view_params] == [0.3, 0.1]
    assert [p.solarize_p for p in aug2.view_params] == [0.0, 0.5]
    grey = ViewAugment("simclr", 28, 1)
    assert grey.view_params[0].saturation == 0 and grey.view_params[0].hue == 0
