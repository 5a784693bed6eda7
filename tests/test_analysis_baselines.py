"""Baselines for the demo: pixel embeddings and random-network features."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from dimcollapse.analysis import baselines
from dimcollapse.errors import ConfigError, InputError


def _images(n: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 16, 16), generator=g, dtype=torch.uint8)


def test_pixel_embeddings_are_scaled_flat_pixels():
    x = _images()
    z = baselines.pixel_embeddings(x)
    assert z.shape == (12, 256) and z.dtype == torch.float32
    np.testing.assert_allclose(z.numpy(), x.numpy().reshape(12, -1) / 255.0, rtol=1e-7)
    np.testing.assert_array_equal(baselines.pixel_embeddings(x[:, 0]).numpy(), z.numpy())  # [N, H, W] too
    with pytest.raises(InputError, match="uint8"):
        baselines.pixel_embeddings(x.float())


@pytest.mark.parametrize("backbone", ["small_resnet", "local"])
def test_random_network_features_seeded(backbone):
    x = _images(10)
    a = baselines.random_network_features(x, seed=3, backbone=backbone)
    b = baselines.random_network_features(x, seed=3, backbone=backbone)
    c = baselines.random_network_features(x, seed=4, backbone=backbone)
    assert a.ndim == 2 and a.shape[0] == 10 and torch.isfinite(a).all()
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    # batching does not change the features (eval mode: no batch statistics)
    torch.testing.assert_close(
        baselines.random_network_features(x, seed=3, backbone=backbone, batch_size=3), a
    )


def test_unknown_backbone_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown backbone 'resnet_typo'"):
        baselines.random_network_features(_images(4), backbone="resnet_typo")


FMNIST = os.environ.get("DIMCOLLAPSE_DATA", "/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="Fashion-MNIST not installed")
def test_demo_embeddings_files(tmp_path):
    paths = baselines.demo_embeddings(tmp_path / "emb", n=40, seed=1)
    pixels, feats, labels = (np.load(paths[k]) for k in ("pixels", "random_small_resnet", "labels"))
    assert pixels.shape == (40, 784) and feats.shape[0] == 40 and labels.shape == (40,)
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0 and set(labels) <= set(range(10))
    images, lab, _ = baselines.load_demo_images(40, seed=1)
    np.testing.assert_array_equal(lab.numpy(), labels)
    np.testing.assert_allclose(pixels, images.reshape(40, -1).numpy() / 255.0, rtol=1e-6)


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="Fashion-MNIST not installed")
def test_baseline_report_compares_pixels_and_random_network(tmp_path):
    results = baselines.baseline_report(tmp_path / "demo", n=60, map_method="none", figures=False)
    assert [m["name"] for m in results] == ["pixels", "random_small_resnet"]
    assert results[0]["d"] == 784 and results[0]["n_classes"] <= 10
    assert (tmp_path / "demo" / "compare_spectrum.png").exists()
    assert (tmp_path / "demo" / "pixels" / "metrics.json").exists()
