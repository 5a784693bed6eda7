"""Crops taken from the FULL decoded image, in the loader: the random-resized crop (Szegedy et al. 2015, as
SimCLR / BYOL / DirectCLR train: area fraction ~ U(scale), log aspect ~ U(log ratio), over the whole image,
then resized to the output side) and the evaluation crop (shorter side to ``resize``, centre ``size``).

Boxes are whole pixels (as torchvision's RandomResizedCrop), so the PIL path (CPU workers) and the tensor
path (images decoded on a GPU) cut the same region; both resample with an antialiased filter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from dimcollapse.data import views_ops as ops
from dimcollapse.errors import ConfigError

RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
Box = tuple[int, int, int, int]  # (left, top, right, bottom) in pixels, right / bottom exclusive


@dataclass(frozen=True)
class CropSpec:
    """One crop of a training sample: side ``size``; ``scale`` None is the evaluation crop (not random)."""

    size: int
    scale: tuple[float, float] | None = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if int(self.size) < 2:
            raise ConfigError(f"crop size must be >= 2, got {self.size}.")
        if self.interpolation not in RESAMPLE:
            raise ConfigError(
                f"crop interpolation must be one of {', '.join(RESAMPLE)}, got {self.interpolation!r}."
            )


def random_box(width: int, height: int, spec: CropSpec, gen: torch.Generator) -> Box:
    """A random-resized-crop box over the whole width x height image (whole pixels, inside the image)."""
    assert spec.scale is not None
    cx, cy, w, h = ops.sample_crop_boxes(1, height, width, spec.scale, spec.ratio, gen)[0].tolist()
    bw, bh = min(width, max(1, round(w))), min(height, max(1, round(h)))
    left = min(max(0, math.floor(cx - w / 2 + 0.5)), width - bw)
    top = min(max(0, math.floor(cy - h / 2 + 0.5)), height - bh)
    return left, top, left + bw, top + bh


def centre_box(width: int, height: int, resize: int, size: int) -> Box:
    """The region that 'shorter side to resize, then centre size x size' keeps, in source pixels."""
    side = max(1, min(width, height, round(size * min(width, height) / resize)))
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def crop_pil(img: Image.Image, box: Box, size: int, interpolation: str = "bilinear") -> Tensor:
    """uint8 [C, size, size]: the box of a decoded PIL image resampled to size x size (antialiased)."""
    out = img.resize((size, size), RESAMPLE[interpolation], box=box)
    arr = np.asarray(out, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def crop_tensor(img: Tensor, box: Box, size: int, interpolation: str = "bilinear") -> Tensor:
    """uint8 [C, size, size] on img's device: the box of a decoded uint8 [C, H, W] image resized."""
    left, top, right, bottom = box
    region = img[None, :, top:bottom, left:right].float()
    out = F.interpolate(region, size=(size, size), mode=interpolation, antialias=True, align_corners=False)
    return out[0].round_().clamp_(0, 255).to(torch.uint8)


def crop_boxes(
    width: int, height: int, specs: list[CropSpec], resize: int, gen: torch.Generator
) -> list[Box]:
    """One box per spec: a random-resized crop, or the evaluation crop when the spec's scale is None."""
    return [
        centre_box(width, height, resize, s.size) if s.scale is None else random_box(width, height, s, gen)
        for s in specs
    ]


def sample_generator(seed: int) -> torch.Generator:
    """The generator of one sample's crops (seeded from the run seed, the micro-batch and the slot)."""
    return torch.Generator().manual_seed(int(seed) % (2**63))
