"""Figures that compare runs of a study: training curves, per-layer spectra, alignment heat maps.

Every function takes plain arrays keyed by run label and returns a matplotlib Figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from dimcollapse import diagnostics as dg
from dimcollapse.diagnostics import catalogue
from dimcollapse.records.monitor import MonitorRecord, record_step
from dimcollapse.records.schema import JsonValue


def grid(n: int, width: float = 3.6, height: float = 3.0, cols: int = 3) -> tuple[Figure, list[Any]]:
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    return fig, axes


def training_curves(histories: Mapping[str, Sequence[MonitorRecord]], output: str = "r") -> Figure:
    """Each catalogue metric with ``curve=True`` (erank, RankMe, collapsed dims, LID) of ``output``
    against training step, one line per run (monitor records, see ``curve_value``)."""
    specs = catalogue.curve_specs()
    fig, axes = grid(len(specs), 4.2, 3.2, cols=2)
    for ax, m in zip(axes, specs, strict=True):
        for label, hist in histories.items():
            steps = [record_step(h) for h in hist]
            vals = [curve_value(h, m, output) for h in hist]
            ax.plot(steps, vals, label=label, linewidth=1.4, marker="o", markersize=3)
        if m.integer:  # a count: integer ticks from 0, not a symmetric band around 0
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            top = max(1.0, ax.get_ylim()[1])
            ax.set_ylim(-0.05 * top, top)
        ax.set_title(f"{m.label} of {output}", fontsize="medium")
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="x-small")
    return fig


def curve_value(record: Mapping[str, JsonValue], m: catalogue.MetricSpec, output: str = "r") -> float:
    """The value of metric ``m`` on ``output`` in one monitor record: the recorded ``<record_name>_<o>``,
    else computed from the recorded spectrum ``spectrum_<o>`` when the spectrum is all it needs (e.g.
    collapsed dims), else NaN."""
    value = record.get(f"{m.record_name}_{output}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    spectrum = record.get(f"spectrum_{output}")
    if spectrum:
        computed = m.fn(catalogue.Context(eig=np.asarray(spectrum, dtype=np.float64)))
        if computed is not None:
            return float(computed)
    return float("nan")


def _depth_lines(ax: Any, spectra: Mapping[str, np.ndarray], normalise: bool, log: bool) -> None:
    cmap = _viridis()
    n = max(1, len(spectra) - 1)
    for i, (name, s) in enumerate(spectra.items()):
        s = np.sort(np.clip(np.asarray(s, dtype=np.float64), 0, None))[::-1]
        if normalise and s.size and s[0] > 0:
            s = s / s[0]
        y = np.log10(np.maximum(s, 1e-12)) if log else s
        ax.plot(np.arange(1, s.size + 1) / s.size, y, color=cmap(i / n), linewidth=1.0, label=name)


def _viridis() -> Any:
    import matplotlib

    return matplotlib.colormaps["viridis"]


Limits = Mapping[str, tuple[int, int]]


def limited_label(name: str, limits: Limits | None) -> str:
    """``name`` with ' (rank <= b of w by construction)' when the layer is rank-limited."""
    if limits and name in limits:
        bound, width = limits[name]
        return f"{name} (rank <= {bound} of {width} by construction)"
    return name


def layer_spectra_panels(
    per_run: Mapping[str, Mapping[str, np.ndarray]], kind: str, limits: Limits | None = None
) -> Figure:
    """One panel per run: the normalised spectrum of every layer (colour = depth, dark = input side).

    ``kind`` is "weight" (singular values / largest) or "feature" (log10 covariance eigenvalue / largest).
    The x axis is the rank index divided by the layer's size so layers of different width compare.
    ``limits`` (layer -> (bound, width)) names the rank-limited layers in the legend.
    """
    fig, axes = grid(len(per_run))
    for ax, (label, spectra) in zip(axes, per_run.items(), strict=True):
        _depth_lines(ax, {limited_label(n, limits): s for n, s in spectra.items()}, True, kind == "feature")
        ax.set_title(label, fontsize="small")
        ax.set_xlabel("rank index / layer size")
        ax.set_ylabel("sigma / sigma_max" if kind == "weight" else "log10 eigenvalue / largest")
        ax.grid(True, alpha=0.3)
        if len(spectra) <= 8:
            ax.legend(fontsize="xx-small")
    fig.suptitle(
        ("Weight spectra per layer" if kind == "weight" else "Hidden-feature spectra per block")
        + " (dark: input side, yellow: output side)",
        fontsize="medium",
    )
    return fig


def layer_erank_profile(
    per_run: Mapping[str, Mapping[str, np.ndarray]], kind: str, limits: Limits | None = None
) -> Figure:
    """Effective rank / size of each layer's spectrum against depth, one line per run.

    Shows where in the encoder collapse happens (OR fig. 3-5, LL fig. 3-4). Rank-limited layers
    (``limits``: layer -> (bound, width)) are shaded and their tick labels starred: a low value there is
    set by the layer's shape, not collapse.
    """
    fig = Figure(figsize=(7.5, 3.8), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    names: list[str] = []
    for label, spectra in per_run.items():
        vals = []
        for s in spectra.values():
            lam = np.asarray(s, dtype=np.float64) ** (2 if kind == "weight" else 1)
            vals.append(dg.effective_rank(lam) / max(1, lam.size) if lam.size and lam.max() > 0 else np.nan)
        ax.plot(np.arange(len(vals)), vals, marker="o", markersize=3, linewidth=1.3, label=label)
        if len(spectra) > len(names):
            names = list(spectra)
    starred = [i for i, n in enumerate(names) if limits and n in limits]
    for i in starred:
        ax.axvspan(i - 0.4, i + 0.4, color="0.85", zorder=0)
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(
        [n.replace("backbone.", "") + (" *" if i in starred else "") for i, n in enumerate(names)],
        rotation=70,
        fontsize="xx-small",
    )
    ax.set_ylabel("effective rank / layer size")
    title = ("Weights" if kind == "weight" else "Hidden features") + ": effective rank by depth"
    if starred:
        title += "\n* shaded: rank-limited by construction (rank <= fan-in < width), not collapse"
    ax.set_title(title, fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small")
    return fig


def alignment_panels(
    per_run: Mapping[str, tuple[np.ndarray, Sequence[str]]],
    random: Mapping[str, tuple[float, float, float]] | None = None,
) -> Figure:
    """|A| = |V2^T U1| heat maps of the last two composable layers of each run (DC fig. 5); ``random``
    (run -> mean, 5%, 95% of random orthonormal bases of the same sizes) goes into each title."""
    fig, axes = grid(len(per_run), 3.3, 3.1)
    for ax, (label, (mat, layers)) in zip(axes, per_run.items(), strict=True):
        full = np.abs(np.asarray(mat))
        m = full[:64, :64]
        im = ax.imshow(m, vmin=0, vmax=1, cmap="magma", interpolation="nearest")
        title = f"{label}\nmean |diag| {np.mean(np.diag(full)):.2f}"
        if random and label in random:
            title += f" (random {random[label][0]:.2f}, 5-95% {random[label][1]:.2f}-{random[label][2]:.2f})"
        ax.set_title(title, fontsize="x-small")
        ax.set_xlabel(f"U1 of {layers[0]}" if layers else "", fontsize="xx-small")
        ax.set_ylabel(f"V2 of {layers[1]}" if len(layers) > 1 else "", fontsize="xx-small")
        ax.tick_params(labelsize="xx-small")
    if per_run:
        fig.colorbar(im, ax=axes, shrink=0.6, label="|A|")
    return fig


def alignment_vs_random(scores: Mapping[str, tuple[float, float, float, float]]) -> Figure:
    """Each run's mean |diag A| (dot) against the band of random orthonormal bases of the same sizes
    (grey bar: 5-95% over draws, tick: mean); ``scores``: run -> (value, random mean, 5%, 95%)."""
    fig = Figure(figsize=(max(4.0, 1.0 + 0.9 * len(scores)), 3.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for i, (value, rmean, low, high) in enumerate(scores.values()):
        ax.add_patch(Rectangle((i - 0.3, low), 0.6, max(high - low, 1e-4), color="0.8", zorder=1))
        ax.plot([i - 0.3, i + 0.3], [rmean, rmean], color="0.45", linewidth=1.5, zorder=2)
        ax.plot([i], [value], "o", color="C3", markersize=7, zorder=3)
    ax.set_xticks(np.arange(len(scores)))
    ax.set_xticklabels(list(scores), rotation=30, ha="right", fontsize="x-small")
    ax.set_xlim(-0.6, len(scores) - 0.4)
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean |diag A|")
    ax.set_title("Alignment (red) vs random orthonormal bases (grey: 5-95%, line: mean)", fontsize="small")
    ax.grid(True, axis="y", alpha=0.3)
    return fig
