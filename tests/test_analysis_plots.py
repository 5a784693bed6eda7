"""viz.plots: the drawn data equal the quantities computed independently; files are valid PNG/SVG."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from dimcollapse.viz import plots


def test_log_spectrum_lines_are_log10_eigenvalues():
    eig_a = np.array([4.0, 1.0, 0.25, 0.0, -1e-17])
    eig_b = np.array([2.0, 2.0, 2.0, 2.0, 2.0])
    fig = plots.plot_log_spectrum({"a": eig_a, "b": eig_b}, floor=1e-6)
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines[:2]] == ["a", "b"]
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3, 4, 5])
    y = np.asarray(lines[0].get_ydata(), dtype=float)
    np.testing.assert_allclose(y[:3], np.log10([4.0, 1.0, 0.25]))
    assert np.isnan(y[3:]).all()  # zero and negative eigenvalues are not drawn
    np.testing.assert_allclose(lines[1].get_ydata(), np.log10(2.0))
    rel = plots.plot_log_spectrum(np.array([1.0, 8.0, 2.0]), relative=True).axes[0].get_lines()[0]
    np.testing.assert_allclose(rel.get_ydata(), np.log10([1.0, 0.25, 0.125]))  # sorted, over the largest


def test_cumulative_variance_curve():
    eig = np.array([0.5, 3.0, 1.5, -1e-18])
    line = plots.plot_cumulative_variance({"x": eig}).axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), [0.6, 0.9, 1.0, 1.0])


def test_lid_histogram_counts_and_geometric_mean():
    lids = np.random.default_rng(0).gamma(4.0, 2.0, size=400)
    fig = plots.plot_lid_histogram({"run": lids}, bins=20)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert sum(heights) == 400 and len(heights) == 20
    gm = np.exp(np.mean(np.log(lids)))
    assert f"{gm:.2f}" in ax.get_legend().get_texts()[0].get_text()
    assert ax.get_lines()[0].get_xdata()[0] == pytest.approx(gm)


def test_correlation_and_heatmap():
    x = np.random.default_rng(1).normal(size=(200, 5))
    x[:, 4] = 0.0  # a dead dimension
    cov = np.cov(x.T, bias=True)
    r = plots.correlation_from_covariance(cov)
    np.testing.assert_allclose(r[:4, :4], np.corrcoef(x[:, :4].T), atol=1e-12)
    assert r[4, 4] == 1.0 and np.all(r[4, :4] == 0.0)
    big = np.eye(300)
    fig = plots.plot_covariance_heatmap(big, max_dims=64)
    ax = fig.axes[0]
    assert ax.images[0].get_array().shape == (64, 64)
    assert "first 64 of 300 dims" in ax.get_title()
    with pytest.raises(ValueError):
        plots.plot_covariance_heatmap(big, kind="spearman")


def test_pca_map_matches_principal_axes_and_umap_fallback(monkeypatch):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(300, 6)) * np.array([5.0, 2.0, 0.5, 0.1, 0.1, 0.1])
    xy, used = plots.embedding_map_coords(z, method="pca")
    assert used == "PCA"
    zc = z - z.mean(0)
    _, _, vt = np.linalg.svd(zc, full_matrices=False)
    ref = zc @ vt[:2].T
    for j in range(2):  # equal up to the sign of each axis
        assert min(np.abs(xy[:, j] - ref[:, j]).max(), np.abs(xy[:, j] + ref[:, j]).max()) < 1e-9
    monkeypatch.setitem(sys.modules, "umap", None)  # umap-learn not importable
    assert not plots.umap_available()
    fig = plots.plot_embedding_map(z, labels=np.arange(300) % 3, method="auto", max_points=100)
    ax = fig.axes[0]
    assert "PCA, 100 points" in ax.get_title()
    assert sum(len(c.get_offsets()) for c in ax.collections) == 100
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]
    with pytest.raises(ValueError, match="labels"):
        plots.plot_embedding_map(z, labels=np.zeros(5), method="pca")


def test_save_figure_writes_png_and_svg_atomically(tmp_path):
    fig = plots.plot_log_spectrum(np.array([3.0, 2.0, 1.0]))
    paths = plots.save_figure(fig, tmp_path / "sub" / "spec")
    assert [p.name for p in paths] == ["spec.png", "spec.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in paths[1].read_text(encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["spec.png", "spec.svg"]
    again = plots.save_figure(fig, tmp_path / "sub" / "spec2", formats=("svg",))
    assert again[0].read_bytes() == paths[1].read_bytes()  # no timestamp: reproducible files
