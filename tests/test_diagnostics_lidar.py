"""LiDAR against a direct loop implementation of Thilak et al. 2023; the metric catalogue's contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from dimcollapse.diagnostics import catalogue, summarize
from dimcollapse.diagnostics.lidar import LidarAccumulator, lidar
from dimcollapse.errors import InputError


def reference_lidar(views: np.ndarray, delta: float = 1e-4, eps: float = 1e-8) -> float:
    """Loop-by-loop LiDAR: class means, Sb/(n-1), Sw/(n(q-1)) + delta I, Sw^-1/2 via scipy sqrtm."""
    n, q, d = views.shape
    mus = [views[i].mean(0) for i in range(n)]
    mu = sum(mus) / n
    sb = np.zeros((d, d))
    for m in mus:
        sb += np.outer(m - mu, m - mu)
    sb /= n - 1
    sw = np.zeros((d, d))
    for i in range(n):
        for j in range(q):
            sw += np.outer(views[i, j] - mus[i], views[i, j] - mus[i])
    sw = sw / (n * (q - 1)) + delta * np.eye(d)
    inv_sqrt = np.linalg.inv(np.real(scipy.linalg.sqrtm(sw)))
    lam = np.clip(np.linalg.eigvalsh(inv_sqrt @ sb @ inv_sqrt), 0, None) + eps
    p = lam / lam.sum()
    return math.exp(-float(np.sum(p * np.log(p))))


def test_lidar_matches_direct_implementation() -> None:
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6))
    views = clean[:, None, :] + 0.3 * rng.normal(size=(40, 5, 6))
    assert lidar(views) == pytest.approx(reference_lidar(views), rel=1e-9)
    assert lidar(views, delta=1e-2) == pytest.approx(reference_lidar(views, delta=1e-2), rel=1e-9)


def test_lidar_streams_in_groups_and_sees_collapse() -> None:
    rng = np.random.default_rng(1)
    views = rng.normal(size=(30, 4, 8)) + 3 * rng.normal(size=(30, 1, 8))
    acc = LidarAccumulator()
    for chunk in np.array_split(views, 4):
        acc.update(chunk)
    from dimcollapse.diagnostics.lidar import lidar_from_eigenvalues

    assert lidar_from_eigenvalues(acc.eigenvalues()) == pytest.approx(lidar(views), rel=1e-10)
    # sample identity carried by 2 directions only: LiDAR falls to about 2
    low = np.zeros((30, 4, 8))
    low[:, :, :2] = 3 * rng.normal(size=(30, 1, 2))
    low += 0.1 * rng.normal(size=(30, 4, 8))
    assert lidar(low) < 2.5 < 6 < lidar(views)


def test_lidar_rejects_single_views() -> None:
    with pytest.raises(InputError, match="q >= 2"):
        lidar(np.zeros((10, 1, 3)))


def test_catalogue_keys_are_unique_and_summarize_reports_each_embedding_metric() -> None:
    keys = [m.key for m in catalogue.METRICS]
    assert len(keys) == len(set(keys))
    z = np.random.default_rng(0).normal(size=(60, 5))
    s = summarize(z, k=5)
    for m in catalogue.METRICS:
        assert (m.key in s) == (m.needs == frozenset({catalogue.EMBEDDINGS})), m.key
    views = z[:, None, :] + 0.1 * np.random.default_rng(1).normal(size=(60, 3, 5))
    assert summarize(z, k=5, views=views)["lidar"] == pytest.approx(lidar(views))
    assert catalogue.fmt("collapsed_dims", 3.0) == "3" and catalogue.fmt("erank", float("nan")) == "-"


def test_collapse_threshold_is_the_one_used_for_collapsed_dims() -> None:
    eig = np.array([1.0, 0.5, 2 * catalogue.COLLAPSE_THRESHOLD, 0.5 * catalogue.COLLAPSE_THRESHOLD])
    assert catalogue.evaluate(catalogue.Context(eig=eig), ["collapsed_dims"])["collapsed_dims"] == 1
