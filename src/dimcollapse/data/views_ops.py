"""Batched random image operations for view augmentation: every sample gets its own random parameters,
and each operation is one or two tensor ops on the whole batch (no per-sample Python loop).

Random parameters are drawn on the CPU from a `torch.Generator` (a few numbers per image), then moved to
the images' device, so the same seed gives the same views on any device.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 grey weights, as PIL / torchvision use


def uniform(
    n: int, low: float, high: float, gen: torch.Generator | None, shape: tuple[int, ...] = ()
) -> Tensor:
    """n (x shape) samples of U(low, high) in float64 on the CPU."""
    return torch.rand((n, *shape), generator=gen, dtype=torch.float64) * (high - low) + low


def bernoulli(n: int, p: float, gen: torch.Generator | None) -> Tensor:
    """n booleans, each True with probability p."""
    if p <= 0.0:
        return torch.zeros(n, dtype=torch.bool)
    if p >= 1.0:
        return torch.ones(n, dtype=torch.bool)
    return torch.rand(n, generator=gen, dtype=torch.float64) < p


def sample_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    gen: torch.Generator | None,
    attempts: int = 10,
) -> Tensor:
    """Random-resized-crop boxes (cx, cy, w, h) in pixels, [n, 4] float64 (Szegedy et al. 2015 / SimCLR).

    Area fraction ~ U(scale), log aspect ~ U(log ratio); the first of `attempts` draws that fits the image is
    kept, otherwise the largest centred box with aspect clamped to `ratio`. Boxes are continuous (sub-pixel).
    """
    area = float(height * width)
    target = uniform(n, scale[0], scale[1], gen, (attempts,)) * area
    log_r = uniform(n, math.log(ratio[0]), math.log(ratio[1]), gen, (attempts,))
    r = torch.exp(log_r)
    w = torch.sqrt(target * r)
    h = torch.sqrt(target / r)
    ok = (w <= width) & (h <= height) & (w > 0) & (h > 0)
    first = ok.to(torch.int8).argmax(dim=1)
    rows = torch.arange(n)
    w_sel, h_sel = w[rows, first], h[rows, first]
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = float(width), width / ratio[0]
    elif in_ratio > ratio[1]:
        fw, fh = height * ratio[1], float(height)
    else:
        fw, fh = float(width), float(height)
    has = ok.any(dim=1)
    w_sel = torch.where(has, w_sel, torch.full_like(w_sel, fw))
    h_sel = torch.where(has, h_sel, torch.full_like(h_sel, fh))
    u = torch.rand((n, 2), generator=gen, dtype=torch.float64)
    cx = u[:, 0] * (width - w_sel) + w_sel / 2
    cy = u[:, 1] * (height - h_sel) + h_sel / 2
    return torch.stack([cx, cy, w_sel, h_sel], dim=1)


def crop_theta(boxes: Tensor, height: int, width: int, flip: Tensor) -> Tensor:
    """Affine matrices [n, 2, 3] mapping output grid [-1, 1]^2 onto each box (align_corners=False);
    a flipped sample has its x scale negated: x_in = (2 cx / W - 1) + s (w / W) u_out, s = -1 if flipped."""
    cx, cy, w, h = boxes.unbind(dim=1)
    sign = 1.0 - 2.0 * flip.to(torch.float64)
    theta = torch.zeros(boxes.shape[0], 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = sign * w / width
    theta[:, 0, 2] = 2.0 * cx / width - 1.0
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = 2.0 * cy / height - 1.0
    return theta


def resized_crop_flip(x: Tensor, out_size: int, theta: Tensor) -> Tensor:
    """Bilinear resample of every image x[i] through theta[i] to [C, out_size, out_size]: one grid_sample."""
    n, c = x.shape[:2]
    grid = F.affine_grid(
        theta.to(device=x.device, dtype=x.dtype), [n, c, out_size, out_size], align_corners=False
    )
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grey_weights(channels: int) -> Tensor:
    """Grey-level weights w (y = w^T x): ITU-R 601 luma for RGB, the channel mean otherwise."""
    if channels == 3:
        return torch.tensor(LUMA, dtype=torch.float64)
    return torch.full((channels,), 1.0 / channels, dtype=torch.float64)


def hue_rotation(angle: Tensor) -> Tensor:
    """Rotation matrices [n, 3, 3] of RGB space about the grey axis k = (1,1,1)/sqrt(3) by `angle` radians:
    R = cos(a) I + sin(a) [k]x + (1 - cos(a)) k k^T (Rodrigues); shifts hue, keeps the channel mean."""
    q = 1.0 / math.sqrt(3.0)
    k = torch.full((3,), q, dtype=torch.float64)
    cross = torch.tensor([[0.0, -q, q], [q, 0.0, -q], [-q, q, 0.0]], dtype=torch.float64)
    c, s = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    return c * torch.eye(3, dtype=torch.float64) + s * cross + (1 - c) * torch.outer(k, k)


class ColourMap(NamedTuple):
    """Per-image colour map y = A x + P mu + q (mu: the image's mean colour); A, P [n, C, C], q [n, C]."""

    a: Tensor
    p: Tensor
    q: Tensor


def color_affine(
    n: int,
    channels: int,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    jitter_p: float,
    grayscale_p: float,
    gen: torch.Generator | None,
    order: list[int] | None = None,
) -> ColourMap:
    """Random per-image colour maps composing colour jitter then grayscale, as y = A x + P mu + q.

    Jitter (p = jitter_p, ops in `order`, default a random permutation per batch), as torchvision defines
    them but without intermediate clamping: brightness y = f x; contrast y = f x + (1 - f) mean(w^T x);
    saturation y = f x + (1 - f) 1 w^T x; hue: rotation about the grey axis by 2 pi f (f ~ U(-hue, hue)).
    Factors f ~ U(max(0, 1 - s), 1 + s). Grayscale (p = grayscale_p) y = 1 w^T x. Contrast's mean is
    linear in the input's mean colour mu, hence the P mu term (computed later, on the images' device,
    without a device-to-host copy). Saturation, hue and grayscale act on 3 channels only.
    """
    c = channels
    eye = torch.eye(c, dtype=torch.float64)
    a_mat = eye.expand(n, c, c).clone()
    p_mat = torch.zeros(n, c, c, dtype=torch.float64)
    q = torch.zeros(n, c, dtype=torch.float64)
    w = grey_weights(c)
    ones_w = torch.ones(c, 1, dtype=torch.float64) @ w[None, :]  # 1 w^T
    apply = bernoulli(n, jitter_p, gen)[:, None, None]
    ops = order if order is not None else torch.randperm(4, generator=gen).tolist()
    for op in ops:
        if op == 0 and brightness > 0:
            f = uniform(n, max(0.0, 1 - brightness), 1 + brightness, gen)[:, None, None]
            new = (f * a_mat, f * p_mat, f[:, :, 0] * q)
        elif op == 1 and contrast > 0:
            f = uniform(n, max(0.0, 1 - contrast), 1 + contrast, gen)[:, None, None]
            new = (
                f * a_mat,
                f * p_mat + (1 - f) * (ones_w @ (a_mat + p_mat)),
                f[:, :, 0] * q + (1 - f[:, :, 0]) * (q @ ones_w.T),
            )
        elif op == 2 and saturation > 0 and c == 3:
            f = uniform(n, max(0.0, 1 - saturation), 1 + saturation, gen)[:, None, None]
            m = f * eye + (1 - f) * ones_w
            new = (m @ a_mat, m @ p_mat, (m @ q[:, :, None]).squeeze(-1))
        elif op == 3 and hue > 0 and c == 3:
            m = hue_rotation(uniform(n, -hue, hue, gen) * 2 * math.pi)
            new = (m @ a_mat, m @ p_mat, (m @ q[:, :, None]).squeeze(-1))
        else:
            continue
        a_mat = torch.where(apply, new[0], a_mat)
        p_mat = torch.where(apply, new[1], p_mat)
        q = torch.where(apply[:, :, 0], new[2], q)
    if c == 3 and grayscale_p > 0:
        g = bernoulli(n, grayscale_p, gen)
        a_mat = torch.where(g[:, None, None], ones_w @ a_mat, a_mat)
        p_mat = torch.where(g[:, None, None], ones_w @ p_mat, p_mat)
        q = torch.where(g[:, None], q @ ones_w.T, q)
    return ColourMap(a_mat, p_mat, q)


def apply_affine(x: Tensor, cmap: ColourMap, scale: float = 1.0) -> Tensor:
    """clamp(A (scale x) + P mu + q, 0, 1) per image, mu = mean colour of scale x; batched, on x's device."""
    n, c, h, w = x.shape
    a = (cmap.a * scale).to(device=x.device, dtype=x.dtype)
    mu = x.mean(dim=(2, 3)) * scale
    bias = torch.baddbmm(
        cmap.q.to(device=x.device, dtype=x.dtype)[:, :, None], cmap.p.to(x.device, x.dtype), mu[:, :, None]
    )
    if c == 1:
        y = x * a.view(n, 1, 1, 1) + bias.view(n, 1, 1, 1)
    else:
        y = torch.baddbmm(bias, a, x.reshape(n, c, h * w)).view(n, c, h, w)
    return y.clamp_(0.0, 1.0)


def gaussian_blur(
    x: Tensor, mask: Tensor, sigma: tuple[float, float], kernel_size: int, gen: torch.Generator | None
) -> Tensor:
    """Blur the images where mask is True with a Gaussian of sigma ~ U(sigma) per image (separable kernel of
    odd `kernel_size`, reflect padding): k(t) ∝ exp(-t^2 / (2 sigma^2)), normalised to sum 1."""
    idx = mask.nonzero().flatten()
    sig = uniform(int(idx.numel()), sigma[0], sigma[1], gen)
    if idx.numel() == 0 or kernel_size < 3:
        return x
    half = kernel_size // 2
    t = torch.arange(-half, half + 1, dtype=torch.float64)
    k = torch.exp(-(t[None, :] ** 2) / (2 * sig[:, None] ** 2))
    k = k / k.sum(dim=1, keepdim=True)
    n_sel, (c, h, w) = int(idx.numel()), x.shape[1:]
    kern = k.repeat_interleave(c, dim=0).to(device=x.device, dtype=x.dtype)
    idx_d = idx.to(x.device)
    sel = x.index_select(0, idx_d).reshape(1, n_sel * c, h, w)
    pad_h, pad_w = min(half, h - 1), min(half, w - 1)
    sel = F.pad(sel, (pad_w, pad_w, 0, 0), mode="reflect")
    sel = F.conv2d(sel, kern[:, None, None, half - pad_w : half + pad_w + 1], groups=n_sel * c)
    sel = F.pad(sel, (0, 0, pad_h, pad_h), mode="reflect")
    sel = F.conv2d(sel, kern[:, None, half - pad_h : half + pad_h + 1, None], groups=n_sel * c)
    out = x.clone()
    out.index_copy_(0, idx_d, sel.view(n_sel, c, h, w))
    return out


def solarize(x: Tensor, mask: Tensor, threshold: float) -> Tensor:
    """Where mask is True: y = 1 - x for pixels x >= threshold, else x (images in [0, 1])."""
    if not bool(mask.any()):
        return x
    m = mask.to(x.device)[:, None, None, None] & (x >= threshold)
    return torch.where(m, 1.0 - x, x)
