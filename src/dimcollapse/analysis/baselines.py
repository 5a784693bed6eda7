"""Reference embeddings with no training: raw pixels and a randomly initialised network (the demo's report).

    from dimcollapse.analysis.baselines import demo_embeddings
    files = demo_embeddings("runs/demo/embeddings", n=5000)  # pixels, random_small_resnet, labels .npy
    # then: dimcollapse analyze runs/demo/embeddings/pixels.npy runs/demo/embeddings/random_small_resnet.npy \
    #           --labels runs/demo/embeddings/labels.npy --compare --out runs/demo

Pixels are the input space every SSL method starts from; a random network shows the spectrum an
encoder has before any training (its collapse is architecture alone, DC section 5 / OR fig. 3).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dimcollapse.errors import InputError, unknown_name
from dimcollapse.utils.atomic import atomic_save, ensure_writable_dir


def _check_images(images: Tensor) -> Tensor:
    x = torch.as_tensor(images)
    if x.ndim == 3:  # [N, H, W] grey images
        x = x[:, None]
    if x.ndim != 4 or x.shape[0] < 1:
        raise InputError(f"images must be [N, C, H, W] (or [N, H, W]), got shape {tuple(x.shape)}.")
    if x.dtype != torch.uint8:
        raise InputError(f"images must be uint8 in [0, 255], got {x.dtype}.")
    return x


def pixel_embeddings(dataset_images_uint8: Tensor) -> Tensor:
    """Raw pixels as embeddings: z_i = vec(x_i) / 255, shape [N, C*H*W] float32."""
    x = _check_images(dataset_images_uint8)
    return x.reshape(x.shape[0], -1).to(torch.float32) / 255.0


class _RandomConvNet(nn.Module):
    """Fallback when no registered backbone exists: 3 conv-ReLU-pool stages, global average pool, D = 128."""

    def __init__(self, in_channels: int, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            c = w
        self.features = nn.Sequential(*layers)
        self.out_dim = c

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x).mean(dim=(2, 3))


def random_network(in_channels: int, seed: int, backbone: str = "small_resnet") -> nn.Module:
    """A randomly initialised backbone in eval mode: a registered name, or "local" (a 3-stage conv net).

    The default ``small_resnet`` falls back to the local net when no such backbone is registered.
    """
    from dimcollapse.registry import build, names

    torch.manual_seed(seed)
    if backbone == "local" or (backbone == "small_resnet" and backbone not in names("backbone")):
        return _RandomConvNet(in_channels).eval()
    if backbone not in names("backbone"):
        raise unknown_name("backbone", backbone, [*names("backbone"), "local"])
    net: nn.Module = build("backbone", backbone, in_channels=in_channels)
    return net.eval()


@torch.no_grad()
def random_network_features(
    images: Tensor, seed: int = 0, backbone: str = "small_resnet", batch_size: int = 500
) -> Tensor:
    """Representations r = f_theta(x) of a randomly initialised network f (theta drawn with ``seed``).

    Inputs are uint8 images scaled to [0, 1] and standardised per channel: (x/255 - mean_c) / std_c.
    """
    x = _check_images(images)
    net = random_network(x.shape[1], seed, backbone)
    scaled = x.to(torch.float32) / 255.0
    mean = scaled.mean(dim=(0, 2, 3), keepdim=True)
    std = scaled.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6) if x.shape[0] > 1 else torch.ones_like(mean)
    out = [net((scaled[i : i + batch_size] - mean) / std) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out).to(torch.float32)


def load_demo_images(n: int, seed: int = 0, root: str | None = None) -> tuple[Tensor, Tensor, str]:
    """``n`` test images of Fashion-MNIST (seeded subset) with labels and the dataset name."""
    from dimcollapse.registry import build

    ds: Any = build("dataset", "fashion_mnist", root=root, train=False)
    total = int(ds.images.shape[0])
    if n > total:
        raise InputError(f"n={n} exceeds the {total} test images of Fashion-MNIST.")
    idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return ds.images[idx], ds.labels[idx], "fashion_mnist"


def _save_npy(arr: np.ndarray, fh: Any) -> None:
    np.save(fh, arr)


def demo_embeddings(
    out_dir: str | Path, n: int = 5000, seed: int = 0, root: str | None = None
) -> dict[str, Path]:
    """Write pixels.npy, random_small_resnet.npy and labels.npy for ``n`` Fashion-MNIST test images."""
    images, labels, _ = load_demo_images(n, seed, root)
    out = ensure_writable_dir(out_dir)
    arrays = {
        "pixels": pixel_embeddings(images).numpy(),
        "random_small_resnet": random_network_features(images, seed).numpy(),
        "labels": labels.numpy().astype(np.int64),
    }
    paths = {}
    for name, arr in arrays.items():
        path = out / f"{name}.npy"
        atomic_save(path, partial(_save_npy, arr))
        paths[name] = path
    return paths


def baseline_report(
    out: str | Path = "runs/demo",
    n: int = 5000,
    seed: int = 0,
    root: str | None = None,
    map_method: str = "auto",
    figures: bool = True,
) -> list[dict[str, Any]]:
    """Demo without training: embeddings in ``out/embeddings``, then ``analyze --compare`` into ``out``."""
    from dimcollapse.analysis.analyze import compare_paths

    files = demo_embeddings(Path(out) / "embeddings", n=n, seed=seed, root=root)
    return compare_paths(
        [files["pixels"], files["random_small_resnet"]],
        out=out,
        labels=files["labels"],
        map_method=map_method,
        seed=seed,
        figures=figures,
    )
