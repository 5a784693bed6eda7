"""``analyze --model``: every diagnostic of a model someone else trained, on data, written like ``analyze``.

    analyze_model("encoder.pt", "fashion_mnist", out="runs/mine", arch="resnet18",
                  arch_kwargs={"in_channels": 1}, layers=["layer4.*"])

Writes ``out/metrics.json`` (the catalogue metrics of the embeddings, plus ``model``: where the model
came from, ``layers``: weight statistics of the chosen layers, ``features``: erank of each chosen
layer's hidden features, ``alignment``: mean diagonal alignment of consecutive composable chosen
layers), ``out/layers.npz`` (weight and feature spectra) and the figures. Long passes show a progress
bar with an ETA.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dimcollapse.analysis.inputs import Inputs, load_inputs
from dimcollapse.analysis.model_loading import load_model
from dimcollapse.diagnostics import alignment_matrix, effective_rank, feature_spectra
from dimcollapse.diagnostics.weights import singular_values
from dimcollapse.errors import ConfigError
from dimcollapse.track.layers import layer_stats, select_layers
from dimcollapse.track.probe import named_outputs
from dimcollapse.utils.atomic import atomic_save, atomic_write_bytes, atomic_write_json, ensure_writable_dir


def embed_function(spec: str | None) -> Callable[[nn.Module, Any], Any]:
    """``None``/"forward": module(x); "backbone" (a dotted attribute path): module.backbone(x)."""
    if spec in (None, "", "forward"):
        return lambda m, x: m(x)
    assert spec is not None

    def embed(m: nn.Module, x: Any) -> Any:
        target: Any = m
        for part in spec.split("."):
            if not hasattr(target, part):
                raise ConfigError(
                    f"--embed '{spec}': the model has no '{part}'; its children are "
                    f"{', '.join(n for n, _ in m.named_children())}."
                )
            target = getattr(target, part)
        return target(x)

    return embed


def _progress(total: int, what: str) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _batches(inputs: Inputs, batch_size: int, image_size: int | None, channels: int | None, n: int) -> Any:
    for start in range(0, n, batch_size):
        yield inputs.batch(start, min(n, start + batch_size), image_size, channels)


@torch.no_grad()
def embeddings(
    module: nn.Module,
    inputs: Inputs,
    embed: Callable[[nn.Module, Any], Any],
    batch_size: int,
    image_size: int | None,
    channels: int | None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """{output name: (N, D) float64} of every input row, with a progress bar (ETA) when ``progress``."""
    n = int(inputs.x.shape[0])
    parts: dict[str, list[Tensor]] = {}
    bar = _progress(n, "embedding") if progress else None
    task = bar.add_task("embed", total=n) if bar is not None else None
    if bar is not None:
        bar.start()
    try:
        for x in _batches(inputs, batch_size, image_size, channels, n):
            for name, z in named_outputs(embed(module, x)).items():
                parts.setdefault(name, []).append(z)
            if bar is not None and task is not None:
                bar.advance(task, x.shape[0])
    finally:
        if bar is not None:
            bar.stop()
    return {k: torch.cat(v).numpy() for k, v in parts.items()}


def _pool(t: Tensor) -> Tensor:
    """Hidden features as rows: tokens (N, T, E) -> mean over T; maps (N, C, ...) -> mean over positions."""
    if t.ndim == 3:
        return t.mean(1)
    return t.flatten(2).mean(2) if t.ndim > 3 else t.reshape(t.shape[0], -1)


def layer_report(
    module: nn.Module, layers: Sequence[str] | None
) -> tuple[dict[str, Any], dict[str, np.ndarray], list[dict[str, Any]]]:
    """Weight statistics, singular values and consecutive-layer alignments of the chosen layers."""
    weights = select_layers(module, layers)
    spectra = {name: singular_values(w) for name, w in weights.items()}
    stats = {name: layer_stats(sv) for name, sv in spectra.items()}
    align = []
    names = list(weights)
    for a, b in itertools.pairwise(names):
        w1, w2 = weights[a].detach().double(), weights[b].detach().double()
        if w2.shape[1] == w1.shape[0]:  # W2 W1 composes: alignment of W1's left and W2's right vectors
            al = alignment_matrix(w1.numpy(), w2.numpy())
            align.append({"first": a, "second": b, "mean_diag": al.mean_diag})
    return stats, spectra, align


def _feature_layers(module: nn.Module, chosen: Sequence[str]) -> list[str]:
    modules = dict(module.named_modules())
    return [n for n in chosen if n in modules]


def analyze_model(
    model: str | Path,
    data: str,
    out: str | Path,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
    layers: Sequence[str] | None = None,
    embed: str | None = None,
    limit: int | None = None,
    batch_size: int = 256,
    image_size: int | None = None,
    channels: int | None = None,
    k: int = 20,
    feature_points: int = 2000,
    train_split: bool = False,
    figures: bool = True,
    progress: bool = True,
    map_method: str = "auto",
) -> dict[str, Any]:
    """Analyse ``model`` on ``data`` into ``out`` (see the module docstring); returns the metrics dict."""
    from dimcollapse.analysis.analyze import Options, check_options, compute_metrics, render_figures

    t0 = time.perf_counter()
    loaded = load_model(model, arch, arch_kwargs, trust_pickle)
    inputs = load_inputs(data, limit, train_split)
    out_dir = ensure_writable_dir(out)
    outs = embeddings(
        loaded.module, inputs, embed_function(embed), batch_size, image_size, channels, progress
    )
    stats, spectra, align = layer_report(loaded.module, layers)
    feats: dict[str, np.ndarray] = {}
    if not isinstance(loaded.module, torch.jit.ScriptModule):  # TorchScript modules take no forward hooks
        n_feat = min(feature_points, int(inputs.x.shape[0]))
        batches = list(_batches(inputs, batch_size, image_size, channels, n_feat))
        chosen = _feature_layers(loaded.module, list(stats)) or None
        feats = feature_spectra(loaded.module, batches, layers=chosen, pool=_pool)
    arrays = {f"weight_sv/{k_}": v for k_, v in spectra.items()} | {
        f"feature_eig/{k_}": v for k_, v in feats.items()
    }
    savez: Any = np.savez
    atomic_save(out_dir / "layers.npz", lambda fh: savez(fh, **arrays))
    name, z = next(iter(outs.items()))
    opts = Options(k=k, map_method=map_method)
    check_options(opts, z.shape[0], str(model))
    values, arrays = compute_metrics(z, opts)
    metrics: dict[str, Any] = {
        "name": Path(model).stem,
        "source": str(model),
        "data": inputs.name,
        "embedding": name,
        "model": {
            "kind": loaded.kind,
            "arch": arch,
            "outputs": {k_: list(v.shape) for k_, v in outs.items()},
            **{k_: v for k_, v in loaded.info.items() if k_ != "ignored_keys"},
        },
        **values,
        "layers": stats,
        "features": {
            k_: {"erank": effective_rank(v) if v.size and v.max() > 0 else 0.0, "dim": int(v.size)}
            for k_, v in feats.items()
        },
        "alignment": align,
    }
    if inputs.labels is not None:
        metrics["n_classes"] = len(np.unique(inputs.labels))
    if figures:
        files = render_figures(metrics["name"], arrays, inputs.labels, opts)
        files.update(_layer_figures(spectra, feats))
        for fname, blob in files.items():
            atomic_write_bytes(out_dir / "figures" / fname, blob)
        metrics["figures"] = sorted(f"figures/{f}" for f in files)
    metrics["analyze_time_s"] = time.perf_counter() - t0
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics


def _layer_figures(spectra: dict[str, np.ndarray], feats: dict[str, np.ndarray]) -> dict[str, bytes]:
    from dimcollapse.analysis.analyze import _render
    from dimcollapse.report import plots

    return _render(
        {
            "weight_spectra": lambda: plots.plot_log_spectrum(
                {k: v**2 for k, v in spectra.items()}, title="Squared singular values of the weights"
            ),
            "feature_spectra": lambda: plots.plot_log_spectrum(feats, title="Hidden-feature spectra"),
        }
    )


__all__ = ["analyze_model", "embed_function", "embeddings", "layer_report"]
