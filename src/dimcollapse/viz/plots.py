"""Reusable diagnostic figures (SPEC 1.1, 1.7, 1.8): each takes arrays and returns a matplotlib Figure.

Figures are built with the object-oriented API (``matplotlib.figure.Figure``, no pyplot state, Agg
rendering), so they are safe in scripts, tests and servers. ``save_figure`` writes PNG and SVG
atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from dimcollapse.utils.atomic import atomic_write_bytes
from dimcollapse.utils.figures import figure_bytes

ArrayLike = Any
Series = Mapping[str, ArrayLike] | ArrayLike


def _as_series(data: Series, default: str = "embeddings") -> dict[str, np.ndarray]:
    """A mapping name -> 1-D float array, from a mapping or a single array."""
    if isinstance(data, Mapping):
        return {str(k): _np(v).reshape(-1) for k, v in data.items()}
    return {default: _np(data).reshape(-1)}


def _np(x: ArrayLike) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def save_figure(
    fig: Figure,
    path_without_ext: str | os.PathLike[str],
    formats: Sequence[str] = ("png", "svg"),
    dpi: int = 120,
) -> list[Path]:
    """Render ``fig`` to ``<path>.png`` and ``<path>.svg`` (each written atomically); return the paths."""
    base = Path(path_without_ext)
    written = []
    for fmt in formats:
        target = base.with_name(f"{base.name}.{fmt}")
        atomic_write_bytes(target, figure_bytes(fig, fmt, dpi))
        written.append(target)
    return written


def _new_figure(width: float = 6.0, height: float = 4.0) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot(1, 1, 1)


def plot_log_spectrum(
    spectra: Series, title: str = "Embedding spectrum", relative: bool = False, floor: float | None = None
) -> Figure:
    """log10(eigenvalue) against rank index k = 1..D for one or several spectra (DC fig. 2).

    Non-positive eigenvalues cannot be drawn on a log scale and are left out; with ``relative`` each
    spectrum is divided by its largest eigenvalue; ``floor`` draws a dashed line (e.g. the collapse floor).
    """
    fig, ax = _new_figure()
    series = _as_series(spectra)
    for name, eig in series.items():
        eig = np.sort(eig)[::-1]
        if relative and eig.size and eig[0] > 0:
            eig = eig / eig[0]
        rank = np.arange(1, eig.size + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            logv = np.where(eig > 0, np.log10(np.where(eig > 0, eig, 1.0)), np.nan)
        ax.plot(rank, logv, label=name, linewidth=1.5)
    if floor is not None and floor > 0:
        ax.axhline(np.log10(floor), color="grey", linestyle="--", linewidth=1, label="collapse floor")
    ax.set_xlabel("singular value rank index")
    ax.set_ylabel("log10 eigenvalue" + (" / largest" if relative else ""))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(series) > 1 or floor is not None:
        ax.legend(fontsize="small")
    return fig


def plot_cumulative_variance(
    spectra: Series, title: str = "Cumulative explained variance", marks: Sequence[float] = (0.9, 0.99)
) -> Figure:
    """Cumulative share sum_{j<=k} lambda_j / sum_j lambda_j against k, with the ``marks`` levels."""
    fig, ax = _new_figure()
    series = _as_series(spectra)
    for name, eig in series.items():
        eig = np.clip(np.sort(eig)[::-1], 0.0, None)
        total = eig.sum()
        cum = np.cumsum(eig) / total if total > 0 else np.zeros_like(eig)
        ax.plot(np.arange(1, eig.size + 1), cum, label=name, linewidth=1.5)
    for level in marks:
        ax.axhline(level, color="grey", linestyle=":", linewidth=1)
        ax.text(1, level, f" {level:.0%}", va="bottom", fontsize="small", color="grey")
    ax.set_xlabel("number of dimensions k")
    ax.set_ylabel("explained variance")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize="small")
    return fig


def plot_lid_histogram(lids: Series, title: str = "Local intrinsic dimensionality", bins: int = 50) -> Figure:
    """Histogram of per-point LID estimates with each set's geometric mean exp(mean ln LID) (LD fig. 1)."""
    fig, ax = _new_figure()
    series = _as_series(lids, default="LID")
    finite_all = [v[np.isfinite(v) & (v > 0)] for v in series.values()]
    pooled = np.concatenate(finite_all) if finite_all else np.zeros(0)
    edges = np.histogram_bin_edges(pooled, bins=bins) if pooled.size else bins
    for (name, _), vals in zip(series.items(), finite_all, strict=True):
        if vals.size == 0:
            continue
        gm = float(np.exp(np.mean(np.log(vals))))
        hist = ax.hist(vals, bins=edges, alpha=0.5, label=f"{name} (geometric mean {gm:.2f})")
        colour = hist[2][0].get_facecolor() if len(hist[2]) else None
        ax.axvline(gm, color=colour, linestyle="--", linewidth=1.5)
    ax.set_xlabel("LID")
    ax.set_ylabel("number of points")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def correlation_from_covariance(cov: ArrayLike) -> np.ndarray:
    """Correlation R_ij = C_ij / sqrt(C_ii C_jj); dimensions with zero variance get R_ij = 0 (R_ii = 1)."""
    c = _np(cov)
    std = np.sqrt(np.clip(np.diag(c), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = c / np.outer(std, std)
    r[~np.isfinite(r)] = 0.0
    np.fill_diagonal(r, 1.0)
    return np.clip(r, -1.0, 1.0)


def plot_covariance_heatmap(
    matrix: ArrayLike, kind: str = "correlation", title: str | None = None, max_dims: int = 256
) -> Figure:
    """Heat map of a D x D feature covariance, shown as correlation (default) or covariance (LL fig. 2).

    Only the first ``max_dims`` dimensions are drawn (the title says so) to keep files small.
    """
    if kind not in ("correlation", "covariance"):
        raise ValueError(f"kind must be 'correlation' or 'covariance', got {kind!r}")
    c = _np(matrix)
    d = c.shape[0]
    shown = min(d, max_dims)
    c = c[:shown, :shown]
    fig, ax = _new_figure(5.5, 4.6)
    if kind == "correlation":
        img = ax.imshow(
            correlation_from_covariance(c), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest"
        )
    else:
        lim = float(np.abs(c).max()) or 1.0
        img = ax.imshow(c, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    fig.colorbar(img, ax=ax, shrink=0.85)
    suffix = f" (first {shown} of {d} dims)" if shown < d else ""
    ax.set_title((title or f"Feature {kind}") + suffix)
    ax.set_xlabel("dimension")
    ax.set_ylabel("dimension")
    return fig


def umap_available() -> bool:
    """True when umap-learn can be imported."""
    try:
        import umap  # noqa: F401
    except Exception:
        return False
    return True


def embedding_map_coords(z: ArrayLike, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D map of the rows of ``z`` by UMAP (``auto``: when umap-learn imports) or PCA; returns (xy, name)."""
    x = _np(z)
    if method not in ("auto", "umap", "pca"):
        raise ValueError(f"method must be 'auto', 'umap' or 'pca', got {method!r}")
    if method == "auto":
        method = "umap" if umap_available() and x.shape[0] > 15 else "pca"
    if method == "umap":
        import umap

        reducer = umap.UMAP(
            n_components=2, random_state=seed, n_neighbors=min(15, x.shape[0] - 1), n_epochs=200, n_jobs=1
        )
        return np.asarray(reducer.fit_transform(x), dtype=np.float64), "UMAP"
    return _pca_2d(x), "PCA"


def _pca_2d(x: np.ndarray) -> np.ndarray:
    """Projection onto the two leading principal axes (eigenvectors of the covariance)."""
    xc = x - x.mean(axis=0, keepdims=True)
    cov = xc.T @ xc / max(x.shape[0], 1)
    _, vecs = np.linalg.eigh(cov)
    axes = vecs[:, ::-1][:, :2]
    out = xc @ axes
    if out.shape[1] < 2:
        out = np.concatenate([out, np.zeros((out.shape[0], 2 - out.shape[1]))], axis=1)
    return out


def plot_embedding_map(
    z: ArrayLike,
    labels: ArrayLike | None = None,
    method: str = "auto",
    seed: int = 0,
    max_points: int = 3000,
    title: str = "Representations",
) -> Figure:
    """Scatter of a 2-D map (UMAP or PCA, named in the title) of the rows of ``z``, coloured by label."""
    x = _np(z)
    lab = None if labels is None else np.asarray(labels).reshape(-1)
    if lab is not None and lab.shape[0] != x.shape[0]:
        raise ValueError(f"{lab.shape[0]} labels for {x.shape[0]} points")
    if x.shape[0] > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(x.shape[0], max_points, replace=False))
        x = x[idx]
        lab = None if lab is None else lab[idx]
    xy, used = embedding_map_coords(x, method, seed)
    fig, ax = _new_figure(5.5, 5.0)
    if lab is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.6, linewidths=0)
    else:
        classes = np.unique(lab)
        cmap = _class_colours(len(classes))
        for i, c in enumerate(classes):
            sel = lab == c
            ax.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.7, linewidths=0, color=cmap[i], label=str(c))
        if len(classes) <= 20:
            ax.legend(fontsize="x-small", markerscale=3, title="label", loc="best")
    ax.set_title(f"{title} ({used}, {xy.shape[0]} points)")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def _class_colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "viridis"]
    if n <= 20:
        return [cmap(i) for i in range(n)]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]
