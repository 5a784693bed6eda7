"""Figures of the toy experiments (matplotlib, Agg); every PNG is written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from dimcollapse.diagnostics.threshold import COLLAPSE_THRESHOLD, THRESHOLD_TEXT
from dimcollapse.utils.atomic import atomic_write_bytes
from dimcollapse.utils.figures import figure_bytes

TINY = 1e-300


def save(fig: Figure, path: Path) -> str:
    """Write ``fig`` as PNG to ``path`` atomically; return the file name."""
    atomic_write_bytes(path, figure_bytes(fig, "png", dpi=90, tight=True, close=True))
    return path.name


def augmentation_figures(res: dict[str, Any], out: Path) -> list[str]:
    """Singular values of W over training per s (fig. 3), the ratio against s, the lemma-2 eigenvalues."""
    stds = res["noise_stds"]
    steps = np.asarray(res["steps_recorded"])
    sv = np.asarray(res["singular_values"])  # (T, R, d)
    loss = res["config"]["loss"]
    names = []
    fig, axes = plt.subplots(
        1, len(stds), figsize=(3.2 * len(stds), 3.0), sharey=True, squeeze=False, layout="constrained"
    )
    for i, s in enumerate(stds):
        ax = axes[0, i]
        ax.semilogy(steps, np.maximum(sv[:, i, :], TINY), lw=1)
        ax.set_title(f"noise std s = {s:g}")
        ax.set_xlabel("step")
    axes[0, 0].set_ylabel("singular values of W")
    fig.suptitle(f"DC fig. 3: singular values of W during training ({loss} loss)")
    names.append(save(fig, out / f"augmentation_singular_values_{loss}.png"))

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
    ax[0].plot(stds, res["ratio"], "o-")
    ax[0].axhline(res["ratio_initial"], ls=":", c="gray", label="at init")
    ax[0].set_xlabel("noise std s")
    ax[0].set_ylabel("||W[:, 8:]||_F / ||W[:, :8]||_F")
    ax[0].legend()
    ax[0].set_title("noisy / clean column norms at the end")
    e0 = res["lemma2"]["eigenvalues_at_init"]
    for i, s in enumerate(stds):
        ax[1].plot(
            [s] * len(e0[i]["clean_block"]),
            e0[i]["clean_block"],
            "o",
            c="C0",
            ms=4,
            label="clean block" if i == 0 else None,
        )
        ax[1].plot(
            [s] * len(e0[i]["noisy_block"]),
            e0[i]["noisy_block"],
            "x",
            c="C3",
            ms=5,
            label="noisy block" if i == 0 else None,
        )
    ax[1].axhline(0, c="k", lw=0.8)
    ax[1].set_xlabel("noise std s")
    ax[1].set_ylabel("eigenvalues of X")
    ax[1].set_title("lemma 2: X = Sigma0 - Sigma1 at W(0)")
    ax[1].legend()
    names.append(save(fig, out / f"augmentation_ratio_{loss}.png"))

    l1 = res["lemma2"].get("lemma1")
    if l1:
        fig, ax = plt.subplots(figsize=(4.5, 3.2), layout="constrained")
        ax.semilogy(l1["times"], l1["frozen_error"], "o-", label="X held fixed")
        ax.semilogy(l1["times"], l1["full_error"], "s-", label="true loss (X drifts)")
        ax.set_xlabel("t = lr x step")
        ax.set_ylabel("||W(t) - W(0) exp(Xt)|| / ||.||")
        ax.set_title("lemma 1 check")
        ax.legend()
        names.append(save(fig, out / f"augmentation_lemma1_{loss}.png"))
    return names


def alignment_figures(res: dict[str, Any], out: Path) -> list[str]:
    """|A| = |V2^T U1| at start and end (fig. 5), paired singular values (fig. 6), embedding spectrum."""
    loss = res["config"]["loss"]
    names = []
    fig, ax = plt.subplots(1, 2, figsize=(8, 3.6), layout="constrained")
    for a, key, title in ((ax[0], "alignment_initial", "start"), (ax[1], "alignment_final", "end")):
        im = a.imshow(np.abs(np.asarray(res[key]["matrix"])), vmin=0, vmax=1, cmap="viridis")
        a.set_title(f"|V2^T U1| at the {title}")
    fig.colorbar(im, ax=ax.ravel().tolist(), shrink=0.8)
    names.append(save(fig, out / f"alignment_heatmap_{loss}.png"))

    steps = np.asarray(res["steps_recorded"])
    sv = np.asarray(res["singular_values"])  # (T, 2, d)
    spec = np.asarray(res["spectra"])  # (T, d)
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.4), layout="constrained")
    for k in range(sv.shape[2]):
        ax[0].semilogy(steps, np.maximum(sv[:, 0, k], TINY), c=f"C{k % 10}", lw=1)
        ax[0].semilogy(steps, np.maximum(sv[:, 1, k], TINY), c=f"C{k % 10}", lw=1, ls="--")
    ax[0].set_title("singular values: W1 (solid), W2 (dashed)")
    ax[0].set_xlabel("step")
    diff = sv[:, 0, :] ** 2 - sv[:, 1, :] ** 2
    ax[1].plot(steps, diff, lw=1)
    ax[1].set_title("s1_k^2 - s2_k^2 (paired by rank)")
    ax[1].set_xlabel("step")
    idx = np.linspace(0, len(steps) - 1, min(6, len(steps))).astype(int)
    for j, t in enumerate(idx):
        ev = spec[t] / max(spec[t][0], TINY)
        ax[2].semilogy(
            np.arange(1, len(ev) + 1),
            np.maximum(ev, 1e-18),
            "o-",
            ms=3,
            c=plt.cm.viridis(j / max(1, len(idx) - 1)),
            label=f"step {steps[t]}",
        )
    ax[2].axhline(COLLAPSE_THRESHOLD, ls=":", c="gray")
    ax[2].set_title("embedding covariance spectrum / largest")
    ax[2].set_xlabel("rank")
    ax[2].legend(fontsize=7)
    fig.suptitle(f"DC fig. 5-6: two-layer linear network ({loss} loss)")
    names.append(save(fig, out / f"alignment_dynamics_{loss}.png"))
    return names


def depth_figures(res: dict[str, Any], out: Path) -> list[str]:
    """Final embedding spectra per depth, linear and ReLU (fig. 11), and collapsed dims against L."""
    loss = res["config"]["loss"]
    depths = res["depths"]
    nls = res["nonlinearities"]
    fig, ax = plt.subplots(1, len(nls) + 1, figsize=(4.2 * (len(nls) + 1), 3.4), layout="constrained")
    for j, nl in enumerate(nls):
        for i, depth in enumerate(depths):
            ev = np.asarray(res["spectra"][nl][i])
            ev = ev / max(ev[0], TINY)
            ax[j].semilogy(np.arange(1, len(ev) + 1), np.maximum(ev, 1e-18), "o-", ms=3, label=f"L = {depth}")
        ax[j].axhline(COLLAPSE_THRESHOLD, ls=":", c="gray")
        ax[j].set_title(f"{nl}: final embedding spectrum")
        ax[j].set_xlabel("rank")
        ax[j].legend(fontsize=8)
    ax[0].set_ylabel("eigenvalue / largest")
    for nl in nls:
        ax[-1].plot(depths, res["collapsed"][nl], "o-", label=f"{nl}, end", c=f"C{nls.index(nl)}")
        ax[-1].plot(depths, res["collapsed_initial"][nl], "x--", label=f"{nl}, init", c=f"C{nls.index(nl)}")
    ax[-1].set_xlabel("number of layers L")
    ax[-1].set_ylabel(f"collapsed dimensions (< {THRESHOLD_TEXT} of largest)")
    ax[-1].set_xticks(depths)
    ax[-1].legend()
    fig.suptitle(f"DC fig. 11: depth and nonlinearity ({loss} loss)")
    return [save(fig, out / f"depth_spectra_{loss}.png")]
