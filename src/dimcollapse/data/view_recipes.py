"""Augmentation recipes (parameter sets per view) for SimCLR (Chen et al. 2020) and BYOL (Grill et al. 2020),
chosen by image size and channels: 28 grey (Fashion-MNIST), 32 RGB (CIFAR), 96 (STL-10), 224 (ImageNet)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from dimcollapse.errors import ConfigError

RECIPES = ("simclr", "byol", "none")


@dataclass(frozen=True)
class ViewParams:
    """Parameters of one view's random pipeline: crop+flip, colour jitter, grayscale, blur, solarize."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int = 0  # 0: odd size nearest 10% of the image side (at least 3)
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5
    crop: bool = True

    def validate(self) -> ViewParams:
        """Raise ConfigError for a value out of range."""
        probs = ("hflip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p")
        for name in probs:
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"view parameter {name} is a probability in [0, 1], got {v}.")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ConfigError(f"view parameter {name} must be >= 0, got {getattr(self, name)}.")
        if not 0.0 <= self.hue <= 0.5:
            raise ConfigError(f"view parameter hue must be in [0, 0.5], got {self.hue}.")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ConfigError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}.")
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ConfigError(f"crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio}.")
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ConfigError(f"blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}.")
        if self.blur_kernel < 0 or (self.blur_kernel and self.blur_kernel % 2 == 0):
            raise ConfigError(f"blur_kernel must be 0 (auto) or an odd size >= 3, got {self.blur_kernel}.")
        return self


FIELD_NAMES = tuple(f.name for f in fields(ViewParams))
OFF = ViewParams(hflip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0, crop=False)


def size_class(image_size: int, channels: int) -> str:
    """'grey' for non-RGB images, else '32' (<= 48 px), '96' (<= 160 px) or '224'."""
    if channels != 3:
        return "grey"
    if image_size <= 48:
        return "32"
    return "96" if image_size <= 160 else "224"


def base_views(recipe: str, image_size: int, channels: int) -> list[ViewParams]:
    """The default per-view parameters of `recipe` at this size (BYOL: two different views)."""
    kind = size_class(image_size, channels)
    if recipe == "none":
        return [OFF]
    grey: dict[str, Any] = dict(crop_scale=(0.2, 1.0), saturation=0.0, hue=0.0, grayscale_p=0.0)
    if recipe == "simclr":
        table: dict[str, dict[str, Any]] = {
            "grey": grey,
            "32": dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
            "96": dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, blur_p=0.5),
            "224": dict(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, blur_p=0.5),
        }
        return [ViewParams(**table[kind])]
    if recipe == "byol":
        common: dict[str, Any] = dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
        if kind == "grey":
            common = {**common, **grey}
        blur = (1.0, 0.1) if kind in ("96", "224") else (0.0, 0.0)  # no blur on 32 px or grey images
        return [
            ViewParams(**common, blur_p=blur[0], solarize_p=0.0),
            ViewParams(**common, blur_p=blur[1], solarize_p=0.2),
        ]
    raise ConfigError(f"unknown view recipe '{recipe}'. Valid recipes: {', '.join(RECIPES)}.")


def _coerce(name: str, value: Any) -> Any:
    default = getattr(ViewParams(), name)
    try:
        if isinstance(default, tuple):
            pair = tuple(float(v) for v in value)
            if len(pair) != 2:
                raise ValueError
            return pair
        if isinstance(default, bool):
            return bool(value)
        if isinstance(default, int):
            return int(value)
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"view parameter {name} has a bad value {value!r} (default {default!r}).") from None


def apply_overrides(views: list[ViewParams], overrides: Mapping[str, Any]) -> list[ViewParams]:
    """Apply flat overrides to every view and `views: [{...}, {...}]` per view (cycled); unknown keys fail."""
    per_view = overrides.get("views")
    flat = {k: v for k, v in overrides.items() if k != "views"}
    bad = sorted(set(flat) - set(FIELD_NAMES))
    if bad:
        raise ConfigError(
            f"unknown view parameter(s) {', '.join(bad)}. "
            f"Valid: {', '.join(FIELD_NAMES)}, views, name, n_views."
        )
    out = [replace(v, **{k: _coerce(k, val) for k, val in flat.items()}) for v in views]
    if per_view is not None:
        if not isinstance(per_view, list | tuple) or not per_view:
            raise ConfigError("view parameter 'views' must be a non-empty list of dicts, one per view.")
        count = max(len(out), len(per_view))
        out = [out[i % len(out)] for i in range(count)]
        for i in range(count):
            extra = per_view[i % len(per_view)]
            if not isinstance(extra, Mapping):
                raise ConfigError(f"views[{i}] must be a dict of view parameters, got {extra!r}.")
            out[i] = apply_overrides([out[i]], dict(extra))[0]
    return [v.validate() for v in out]


def as_dict(params: ViewParams) -> dict[str, Any]:
    """Plain dict of a view's parameters (for logging and configs)."""
    return dataclasses.asdict(params)
