"""Every collapse diagnostic of one embedding matrix, written as metrics.json plus figures (SPEC 1).

    from dimcollapse.analysis import analyze_embeddings, analyze_path, compare_paths
    metrics = analyze_embeddings(Z, labels=y, out="runs/analyze/mine", k=20)
    analyze_path("embeddings.npy", out="runs/analyze")        # a file or a folder of files
    compare_paths(["simclr.npy", "byol.pt"], out="runs/compare")  # spectra overlaid in one figure

Every input is read and checked before anything is written; figures are rendered in memory and
written atomically, metrics.json last (its presence means the folder is complete).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dimcollapse.analysis.loading import (
    Embeddings,
    as_embeddings,
    embedding_files,
    load_embeddings,
    load_labels,
)
from dimcollapse.diagnostics import catalogue
from dimcollapse.diagnostics.catalogue import COLLAPSE_THRESHOLD, evaluate
from dimcollapse.diagnostics.summary import embedding_context
from dimcollapse.errors import ConfigError, InputError
from dimcollapse.records import EmbeddingRecord, write_record
from dimcollapse.track.verdict import embedding_verdict, rows_le_dims
from dimcollapse.utils.atomic import atomic_write_bytes, atomic_write_json, ensure_writable_dir

MAP_METHODS = ("auto", "umap", "pca", "none")
REL_FLOOR = COLLAPSE_THRESHOLD


@dataclass(frozen=True)
class Options:
    """Settings shared by every file of one ``analyze`` call."""

    l2_normalize: bool = False
    k: int = 20
    lid_max_points: int = 20000
    map_method: str = "auto"
    seed: int = 0


def check_options(opts: Options, rows: int, source: str) -> None:
    """Raise ConfigError/InputError for a k or a map method that cannot work on ``rows`` rows."""
    if isinstance(opts.k, bool) or not isinstance(opts.k, (int, np.integer)) or opts.k < 2:
        raise ConfigError(f"k must be an integer >= 2 (neighbours for LID), got {opts.k!r}. Pass --k 20.")
    if opts.lid_max_points < 3:
        raise ConfigError(f"lid_max_points must be >= 3, got {opts.lid_max_points}.")
    if opts.map_method not in MAP_METHODS:
        raise ConfigError(f"unknown map method '{opts.map_method}'. Valid: {', '.join(MAP_METHODS)}.")
    used = min(rows, opts.lid_max_points)
    if opts.k >= used:
        raise InputError(
            f"{source}: k={opts.k} neighbours need at least k+1={opts.k + 1} rows but LID uses {used}. "
            f"Pass a smaller --k (at most {used - 1})."
        )


def _l2_rows(z: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(z.astype(np.float64), axis=1, keepdims=True)
    return z / np.maximum(norms, 1e-300)


HEATMAP_DIMS = 256


def compute_metrics(z: np.ndarray, opts: Options) -> tuple[dict[str, Any], dict[str, Any]]:
    """Scalar metrics (the catalogue's, keys as ``diagnostics.summarize``) and the arrays the figures need."""
    n, d = z.shape
    if opts.l2_normalize:
        z = _l2_rows(z)
    ctx = embedding_context(
        z, opts.k, opts.lid_max_points, opts.seed, REL_FLOOR, keep_cov=True, cov_dims=HEATMAP_DIMS
    )
    assert ctx.lid_mle is not None and ctx.lid_mom is not None and ctx.cov is not None
    metrics: dict[str, Any] = {
        "n": int(n),
        "d": int(d),
        "l2_normalize": bool(opts.l2_normalize),
        "rel_floor": REL_FLOOR,
        **evaluate(ctx),
        "lid_k": int(opts.k),
        "lid_points": int(ctx.lid_mle.shape[0]),
        "lid_mle": ctx.lid_mle_stats,
        "lid_mom": ctx.lid_mom_stats,
        "spectrum": ctx.eig.tolist(),
    }
    for m in catalogue.METRICS:  # counts as whole numbers
        if m.integer and m.key in metrics:
            metrics[m.key] = int(metrics[m.key])
    metrics["verdict"] = embedding_verdict(metrics)
    arrays = {"eig": ctx.eig, "cov": ctx.cov, "lid_mle": ctx.lid_mle, "z": z}
    return metrics, arrays


def render_figures(
    name: str, arrays: dict[str, Any], labels: np.ndarray | None, opts: Options
) -> dict[str, bytes]:
    """PNG and SVG bytes of each figure of one embedding, keyed by file name (e.g. ``spectrum.png``)."""
    from dimcollapse.viz import plots

    figs: dict[str, Callable[[], Any]] = {
        "spectrum": lambda: plots.plot_log_spectrum(
            {name: arrays["eig"]}, title=f"Embedding spectrum: {name}", floor=REL_FLOOR * arrays["eig"][0]
        ),
        "cumulative_variance": lambda: plots.plot_cumulative_variance(
            {name: arrays["eig"]}, title=f"Cumulative explained variance: {name}"
        ),
        "lid_histogram": lambda: plots.plot_lid_histogram(
            {f"MLE, k={opts.k}": arrays["lid_mle"]}, title=f"Local intrinsic dimensionality: {name}"
        ),
        "covariance_heatmap": lambda: plots.plot_covariance_heatmap(
            arrays["cov"], kind="correlation", title=f"Feature correlation: {name}"
        ),
    }
    method = opts.map_method
    if method in ("umap", "pca") or (method == "auto" and labels is not None):
        figs["embedding_map"] = lambda: plots.plot_embedding_map(
            arrays["z"], labels, method=method, seed=opts.seed, title=name
        )
    return _render(figs)


def _render(figs: dict[str, Callable[[], Any]]) -> dict[str, bytes]:
    from dimcollapse.utils.figures import figure_bytes

    out: dict[str, bytes] = {}
    for stem, make in figs.items():
        fig = make()
        for fmt in ("png", "svg"):
            out[f"{stem}.{fmt}"] = figure_bytes(fig, fmt)
    return out


def _write(out: Path, files: dict[str, bytes], metrics: dict[str, Any]) -> None:
    ensure_writable_dir(out)
    for fname, data in files.items():
        atomic_write_bytes(out / "figures" / fname, data)
    metrics["figures"] = sorted(f"figures/{f}" for f in files)
    write_record(out / "metrics.json", EmbeddingRecord.from_fields(metrics))


def analyze_embeddings(
    Z: Any,
    labels: Any = None,
    out: str | Path | None = None,
    l2_normalize: bool = False,
    k: int = 20,
    name: str = "embeddings",
    lid_max_points: int = 20000,
    map_method: str = "auto",
    seed: int = 0,
    figures: bool = True,
) -> dict[str, Any]:
    """All diagnostics of an N x D matrix (spectrum, erank, RankMe, alpha-ReQ, LID; SPEC 1); write to ``out``.

    ``labels`` (N integers) add a 2-D map coloured by class. With ``out`` set, writes
    ``out/metrics.json`` and ``out/figures/*.png|svg``. Returns the metrics dict.
    """
    if isinstance(Z, torch.Tensor):
        Z = (
            Z.detach().cpu().float().numpy()
            if Z.dtype in (torch.float16, torch.bfloat16)
            else Z.cpu().numpy()
        )
    z, _ = as_embeddings(Z, name)
    lab = None
    if labels is not None:
        lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
        if lab.shape[0] != z.shape[0]:
            raise InputError(f"{name}: {lab.shape[0]} labels for {z.shape[0]} rows; they must match.")
    opts = Options(l2_normalize, k, lid_max_points, map_method, seed)
    check_options(opts, z.shape[0], name)
    if out is not None:
        ensure_writable_dir(out)
    return _analyze(name, z, lab, opts, None if out is None else Path(out), figures, {})


def _analyze(
    name: str,
    z: np.ndarray,
    labels: np.ndarray | None,
    opts: Options,
    out: Path | None,
    figures: bool,
    extra: dict[str, Any],
) -> dict[str, Any]:
    metrics, arrays = compute_metrics(z, opts)
    metrics = {"name": name, **extra, **metrics}
    if rows_le_dims(metrics["n"], metrics["d"]):
        metrics["warnings"] = [
            f"only {metrics['n']} rows for {metrics['d']} dimensions (N <= D): at most {metrics['n'] - 1} "
            "directions can carry variance, so 'collapsed' dimensions and the rank measures are limited "
            f"by the rows, not the model; embed more than {metrics['d']} inputs."
        ]
    if labels is not None:
        metrics["n_classes"] = len(np.unique(labels))
    if out is not None:
        files = render_figures(name, arrays, labels, opts) if figures else {}
        _write(out, files, metrics)
    return metrics


@dataclass(frozen=True)
class _Job:
    emb: Embeddings
    labels: np.ndarray | None
    out: Path | None


def _unique_names(items: Sequence[Embeddings]) -> list[str]:
    stems = [e.path.stem for e in items]
    names = []
    for e, stem in zip(items, stems, strict=True):
        names.append(stem if stems.count(stem) == 1 else f"{stem}_{e.path.suffix.lstrip('.').lower()}")
    if len(set(names)) != len(names):  # same file name in different folders
        names = [f"{i + 1:02d}_{n}" for i, n in enumerate(names)]
    return names


def _prepare(
    paths: Sequence[str | Path],
    out: str | Path | None,
    key: str | None,
    labels_path: str | Path | None,
    drop_nonfinite: bool,
    opts: Options,
    force_subdirs: bool,
) -> list[_Job]:
    """Read and check every input and the output folder; nothing is written before this succeeds."""
    if not paths:
        raise InputError("no embeddings path given. Pass a file or a folder of files.")
    check_options(opts, 2**62, "")  # the options alone (k, map, LID points), before any file is read
    files: list[Path] = []
    for p in paths:
        files.extend(embedding_files(p))
    loaded = [load_embeddings(f, key=key, drop_nonfinite=drop_nonfinite) for f in files]
    jobs = []
    names = _unique_names(loaded)
    sub = force_subdirs or len(loaded) > 1
    for emb, name in zip(loaded, names, strict=True):
        emb = Embeddings(name, emb.path, emb.values, emb.rows_in_file, emb.kept)
        check_options(opts, emb.values.shape[0], f"'{emb.path}'")
        lab = None
        if labels_path is not None:
            lab = load_labels(labels_path, emb.rows_in_file)[emb.kept]
        target = None if out is None else (Path(out) / name if sub else Path(out))
        jobs.append(_Job(emb, lab, target))
    if out is not None:
        ensure_writable_dir(out)
    return jobs


def analyze_path(
    path: str | Path | Sequence[str | Path],
    out: str | Path | None = "runs/analyze",
    key: str | None = None,
    labels: str | Path | None = None,
    drop_nonfinite: bool = False,
    l2_normalize: bool = False,
    k: int = 20,
    lid_max_points: int = 20000,
    map_method: str = "auto",
    seed: int = 0,
    figures: bool = True,
) -> list[dict[str, Any]]:
    """Analyse a file, a folder of files, or several paths: one metrics.json + figures each.

    One file writes to ``out``; several write to ``out/<name>``. ``figures=False`` writes only JSON.
    """
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    opts = Options(l2_normalize, k, lid_max_points, map_method, seed)
    jobs = _prepare(paths, out, key, labels, drop_nonfinite, opts, force_subdirs=False)
    return [_run(job, opts, figures) for job in jobs]


def _run(job: _Job, opts: Options, figures: bool) -> dict[str, Any]:
    extra = {
        "source": str(job.emb.path),
        "rows_in_file": job.emb.rows_in_file,
        "rows_dropped": job.emb.dropped,
    }
    return _analyze(job.emb.name, job.emb.values, job.labels, opts, job.out, figures, extra)


def compare_paths(
    paths: Sequence[str | Path],
    out: str | Path = "runs/compare",
    key: str | None = None,
    labels: str | Path | None = None,
    drop_nonfinite: bool = False,
    l2_normalize: bool = False,
    k: int = 20,
    lid_max_points: int = 20000,
    map_method: str = "auto",
    seed: int = 0,
    figures: bool = True,
) -> list[dict[str, Any]]:
    """Analyse several runs (``out/<name>/``) and overlay their spectra in ``out/compare_*.png|svg``.

    Also writes ``out/compare.json``: one row of scalar metrics per run. ``figures=False`` skips the
    per-run figures (the overlays are always drawn).
    """
    from dimcollapse.viz import plots

    opts = Options(l2_normalize, k, lid_max_points, map_method, seed)
    jobs = _prepare(paths, out, key, labels, drop_nonfinite, opts, force_subdirs=True)
    results = [_run(job, opts, figures) for job in jobs]
    spectra = {m["name"]: np.asarray(m["spectrum"]) for m in results}
    files = _render(
        {
            "compare_spectrum": lambda: plots.plot_log_spectrum(spectra, title="Embedding spectra"),
            "compare_spectrum_relative": lambda: plots.plot_log_spectrum(
                spectra, title="Embedding spectra (relative to the largest)", relative=True
            ),
            "compare_cumulative_variance": lambda: plots.plot_cumulative_variance(spectra),
        }
    )
    root = Path(out)
    for fname, data in files.items():
        atomic_write_bytes(root / fname, data)
    rows = [{key_: v for key_, v in m.items() if not isinstance(v, (list, dict))} for m in results]
    atomic_write_json(root / "compare.json", {"runs": rows, "figures": sorted(files)})
    return results
