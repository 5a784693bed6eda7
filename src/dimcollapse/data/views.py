"""Batched view augmentation on the images' device: `ViewAugment(recipe, image_size, channels)(x_uint8)` ->
list of normalised float views. One grid_sample does crop + flip + resize for the whole batch, one batched
matmul does colour jitter + grayscale (+ the /255 scaling), then blur / solarize on the selected images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dimcollapse.data import views_ops as ops
from dimcollapse.data.crops import CropSpec
from dimcollapse.data.view_recipes import RECIPES, ViewParams, apply_overrides, base_views
from dimcollapse.errors import ConfigError, InputError

# Per-channel mean / std of pixels in [0, 1] (training splits), used when a dataset is named.
DATASET_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "digits": ((0.3057,), (0.3759,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "stl10": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "image_folder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def _stats(values: Sequence[float] | float | None, channels: int, default: float, what: str) -> Tensor:
    if values is None:
        vals = [default] * channels
    elif isinstance(values, int | float):
        vals = [float(values)] * channels
    else:
        vals = [float(v) for v in values]
        if len(vals) == 1:
            vals = vals * channels
    if len(vals) != channels:
        raise ConfigError(f"view {what} has {len(vals)} values but the images have {channels} channels.")
    if what == "std" and min(vals) <= 0:
        raise ConfigError(f"view std must be > 0, got {vals}.")
    return torch.tensor(vals, dtype=torch.float32).view(1, channels, 1, 1)


class ViewAugment(nn.Module):
    """Random views of a uint8 batch: x -> [v_1, ..., v_n], v_i = (aug_i(x / 255) - mean) / std.

    `recipe`: "simclr", "byol" (asymmetric: view i uses the recipe's view i mod 2), "none" (identity), or a
    dict {"name": recipe, "n_views": n, <ViewParams field>: value, "views": [{...}, ...]} overriding any
    parameter for all views / per view. Multi-crop (SwAV, DINO): "local_crops": m adds m local views of
    side "local_size" (default ~ 3/7 of image_size) cropped with scale "local_crop_scale" (default
    (0.05, 0.4)) after the n_views global ones; forward returns [global..., local...].
    `params` is a further override dict. `seed` gives the module its own
    generator (same seed -> same views); without it the global torch RNG is used.
    """

    def __init__(
        self,
        recipe: str | Mapping[str, Any] = "simclr",
        image_size: int = 32,
        channels: int = 3,
        n_views: int | None = None,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        dataset: str | None = None,
        params: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        overrides: dict[str, Any] = {}
        if isinstance(recipe, Mapping):
            overrides = dict(recipe)
            name = str(overrides.pop("name", "simclr"))
            if n_views is None and "n_views" in overrides:
                n_views = int(overrides["n_views"])
            overrides.pop("n_views", None)
        else:
            name = str(recipe)
        local: dict[str, Any] = {
            k: overrides.pop(k) for k in ("local_crops", "local_size", "local_crop_scale") if k in overrides
        }
        if name not in RECIPES:
            raise ConfigError(f"unknown view recipe '{name}'. Valid recipes: {', '.join(RECIPES)}.")
        overrides.update(params or {})
        if int(image_size) < 2 or int(channels) < 1:
            raise ConfigError(
                f"ViewAugment needs image_size >= 2 and channels >= 1, got {image_size}, {channels}."
            )
        self.recipe, self.image_size, self.channels = name, int(image_size), int(channels)
        self.view_params: list[ViewParams] = apply_overrides(
            base_views(name, image_size, channels), overrides
        )
        self.n_views = int(n_views) if n_views is not None else max(2, len(self.view_params))
        if self.n_views < 1:
            raise ConfigError(f"n_views must be >= 1, got {self.n_views}.")
        self.n_local, self.local_size, self.local_params = local_views(
            self.view_params, self.image_size, local
        )
        if dataset is not None and mean is None and std is None and dataset in DATASET_STATS:
            mean, std = DATASET_STATS[dataset]
        self.mean_t: Tensor = _stats(mean, self.channels, 0.5, "mean")
        self.std_t: Tensor = _stats(std, self.channels, 0.5, "std")
        self.generator: torch.Generator | None = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(int(seed))

    @classmethod
    def for_dataset(cls, dataset: Any, recipe: str | Mapping[str, Any] = "simclr", **kw: Any) -> ViewAugment:
        """A ViewAugment matching a dataset's size and channels, normalised by its channel statistics."""
        if "mean" not in kw and "std" not in kw:
            if hasattr(dataset, "channel_stats"):
                kw["mean"], kw["std"] = dataset.channel_stats()
            else:
                kw.setdefault("dataset", getattr(dataset, "name", None))
        return cls(recipe, image_size=dataset.image_size, channels=dataset.channels, **kw)

    def _check(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != self.channels:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(
                f"views expect a batch [N, {self.channels}, H, W] of images, got {shape}; "
                "check the dataset's channels against the augmentation's."
            )
        if x.shape[0] == 0:
            raise InputError("views got an empty batch.")
        return x

    def _normalise(self, y: Tensor) -> Tensor:
        mean = self.mean_t.to(device=y.device, dtype=y.dtype)
        std = self.std_t.to(device=y.device, dtype=y.dtype)
        return (y - mean) / std

    def _to_unit(self, x: Tensor) -> tuple[Tensor, float]:
        """Float copy of x and the factor that maps it to [0, 1] (1/255 for uint8)."""
        if x.dtype == torch.uint8:
            return x.float(), 1.0 / 255.0
        return x.float(), 1.0

    def denormalize(self, v: Tensor) -> Tensor:
        """Back to [0, 1] pixels: v * std + mean (for figures)."""
        return v * self.std_t.to(v.device, v.dtype) + self.mean_t.to(v.device, v.dtype)

    def eval_transform(self, x: Tensor) -> Tensor:
        """Un-augmented normalised tensor: (resize(x) / 255 - mean) / std at image_size."""
        xf, scale = self._to_unit(self._check(x))
        xf = xf * scale
        if xf.shape[-1] != self.image_size or xf.shape[-2] != self.image_size:
            xf = F.interpolate(xf, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        return self._normalise(xf.clamp(0.0, 1.0))

    def view(self, xf: Tensor, scale: float, p: ViewParams, size: int | None = None) -> Tensor:
        """One random view of the float batch xf (values x / scale in [0, 1]) with parameters p, side size."""
        n, _, h, w = xf.shape
        size, gen = size or self.image_size, self.generator
        if p.crop:
            boxes = ops.sample_crop_boxes(n, h, w, p.crop_scale, p.crop_ratio, gen)
            theta = ops.crop_theta(boxes, h, w, ops.bernoulli(n, p.hflip_p, gen))
            y = ops.resized_crop_flip(xf, size, theta)
        else:
            y = xf
            flip = ops.bernoulli(n, p.hflip_p, gen).to(xf.device)[:, None, None, None]
            if p.hflip_p > 0:
                y = torch.where(flip, y.flip(-1), y)
            if h != size or w != size:
                y = F.interpolate(y, size=(size, size), mode="bilinear", antialias=True)
        colour = p.jitter_p > 0 or (p.grayscale_p > 0 and self.channels == 3)
        if colour:
            cmap = ops.color_affine(
                n,
                self.channels,
                p.brightness,
                p.contrast,
                p.saturation,
                p.hue,
                p.jitter_p,
                p.grayscale_p,
                gen,
            )
            y = ops.apply_affine(y, cmap, scale)
        else:
            y = (y * scale).clamp_(0.0, 1.0)
        if p.blur_p > 0:
            kernel = p.blur_kernel or max(3, round(0.1 * size) // 2 * 2 + 1)
            y = ops.gaussian_blur(y, ops.bernoulli(n, p.blur_p, gen), p.blur_sigma, kernel, gen)
        if p.solarize_p > 0:
            y = ops.solarize(y, ops.bernoulli(n, p.solarize_p, gen), p.solarize_threshold)
        return self._normalise(y)

    def crop_plan(self) -> list[CropSpec]:
        """The crops a loader cuts from the full image for this module: the n_views global views, then the
        local ones (a view without a random crop gets the evaluation crop)."""
        params = [self.view_params[i % len(self.view_params)] for i in range(self.n_views)]
        local = [self.local_params[i % len(self.local_params)] for i in range(self.n_local)]
        sizes = [self.image_size] * len(params) + [self.local_size] * len(local)
        return [
            CropSpec(size, p.crop_scale if p.crop else None, p.crop_ratio)
            for size, p in zip(sizes, params + local, strict=True)
        ]

    def from_crops(self, crops: list[Tensor] | tuple[Tensor, ...]) -> list[Tensor]:
        """Views of crops already cut by the loader (one uint8 batch per crop_plan entry): the crop is done,
        the rest of each view's pipeline (flip, colour, blur, solarize, normalise) runs here."""
        if len(crops) != self.n_views + self.n_local:
            raise InputError(
                f"the loader gave {len(crops)} crops per image but the views need "
                f"{self.n_views + self.n_local}; "
                "build the loader from this module's crop_plan()."
            )
        out = []
        for i, c in enumerate(crops):
            j = i - self.n_views
            p = (
                self.view_params[i % len(self.view_params)]
                if j < 0
                else self.local_params[j % len(self.local_params)]
            )
            xf, scale = self._to_unit(self._check(c))
            out.append(self.view(xf, scale, replace(p, crop=False), int(c.shape[-1])))
        return out

    def forward(self, x: Tensor | list[Tensor]) -> list[Tensor]:
        """n_views random views of uint8 x: each [N, C, image_size, image_size] float32 on x's device; a list
        of crops cut by the loader (``crop_plan``) gives one view per crop."""
        if isinstance(x, (list, tuple)):
            return self.from_crops(x)
        xf, scale = self._to_unit(self._check(x))
        if self.recipe == "none" and not self._has_random_ops():
            base = self.eval_transform(x)
            return [base.clone() for _ in range(self.n_views)]
        views = [
            self.view(xf, scale, self.view_params[i % len(self.view_params)]) for i in range(self.n_views)
        ]
        for i in range(self.n_local):
            views.append(self.view(xf, scale, self.local_params[i % len(self.local_params)], self.local_size))
        return views

    def _has_random_ops(self) -> bool:
        return any(
            p.crop or p.hflip_p > 0 or p.jitter_p > 0 or p.grayscale_p > 0 or p.blur_p > 0 or p.solarize_p > 0
            for p in self.view_params
        )

    def extra_repr(self) -> str:
        return (
            f"recipe={self.recipe!r}, image_size={self.image_size}, channels={self.channels}, "
            f"n_views={self.n_views}"
            + (f", local_crops={self.n_local}@{self.local_size}" if self.n_local else "")
        )


def local_views(
    params: list[ViewParams], image_size: int, options: Mapping[str, Any]
) -> tuple[int, int, list[ViewParams]]:
    """(m local crops, their side, their parameters = the global views' with crop_scale local_crop_scale)."""
    m = options.get("local_crops", 0)
    if isinstance(m, bool) or not isinstance(m, int) or m < 0:
        raise ConfigError(f"view option local_crops must be an integer >= 0, got {m!r}.")
    size = options.get("local_size", max(2, round(image_size * 3 / 7)))
    if isinstance(size, bool) or not isinstance(size, int) or not 2 <= size <= image_size:
        raise ConfigError(
            f"view option local_size must be an integer in [2, image_size = {image_size}], got {size!r} "
            "(SwAV / DINO: 96 of 224 px)."
        )
    crop_scale = options.get("local_crop_scale", (0.05, 0.4))
    local = apply_overrides(params, {"crop_scale": crop_scale, "crop": True}) if m else []
    return m, int(size), local


def eval_transform(
    x: Tensor,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    image_size: int | None = None,
    dataset: str | None = None,
) -> Tensor:
    """Normalised un-augmented batch: (resize(x) / 255 - mean) / std (mean/std by `dataset` name if given)."""
    if x.ndim != 4:
        raise InputError(f"eval_transform expects a batch [N, C, H, W], got shape {tuple(x.shape)}.")
    size = int(image_size or x.shape[-1])
    aug = ViewAugment("none", image_size=size, channels=int(x.shape[1]), mean=mean, std=std, dataset=dataset)
    return aug.eval_transform(x)
