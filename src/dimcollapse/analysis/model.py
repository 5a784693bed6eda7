"""``analyze --model``: every diagnostic of a model someone else trained, on data, written like ``analyze``.

    analyze_model("encoder.pt", "fashion_mnist", out="runs/mine", arch="resnet18",
                  arch_kwargs={"in_channels": 1}, layers=["layer4.*"])

Every option is checked first (``ModelOptions.validated``), then the model is loaded and the inputs are
streamed through it in batches (progress bar with an ETA). Nothing is written until every number is
computed: then ``out/layers.npz`` (weight and feature spectra), the figures, and ``out/metrics.json``
(the catalogue metrics of the embedding analysed, plus ``embedding``: which output and pooling,
``outputs``: the size and erank of every output of the forward, ``model``: where it came from and any
classifier head, ``layers``: weight statistics of the chosen layers, ``features``: erank of each chosen
layer's hidden features (``features_skipped``: layers that never ran, e.g. momentum copies; ``--layers
blocks``: each transformer block's residual stream, ``analysis/blocks.py``), ``alignment``, ``warnings``,
``verdict``; with a token pool ``inputs`` and ``rows_per_input``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dimcollapse.analysis.blocks import split_layers
from dimcollapse.analysis.embedding import TOKEN_POOLS, embed_function, prefix_tokens, token_rows
from dimcollapse.analysis.inputs import Inputs, Preprocess, load_inputs
from dimcollapse.analysis.model_embed import Collected, collect, model_failure
from dimcollapse.analysis.model_loading import LoadedModel, load_model
from dimcollapse.analysis.model_options import ModelOptions
from dimcollapse.diagnostics import alignment_matrix, effective_rank, feature_spectra
from dimcollapse.diagnostics.weights import singular_values
from dimcollapse.errors import InputError
from dimcollapse.records import EmbeddingRecord, write_record
from dimcollapse.track.layers import layer_stats, select_layers
from dimcollapse.utils.atomic import atomic_save, atomic_write_bytes, ensure_writable_dir


def layer_report(
    module: nn.Module, layers: Sequence[str] | None
) -> tuple[dict[str, Any], dict[str, np.ndarray], list[dict[str, Any]]]:
    """Weight statistics, singular values and consecutive-layer alignments of the chosen layers."""
    weights = select_layers(module, layers)
    bad = [n for n, w in weights.items() if not bool(torch.isfinite(w).all())]
    if bad:
        raise InputError(
            f"the model's weights hold NaN/Inf (layers {', '.join(bad[:4])}"
            f"{' ...' if len(bad) > 4 else ''}); the checkpoint is from a diverged run. Analyse an "
            "earlier checkpoint."
        )
    spectra = {name: singular_values(w) for name, w in weights.items()}
    stats = {name: layer_stats(sv) for name, sv in spectra.items()}
    align = []
    for a, b in itertools.pairwise(list(weights)):
        w1, w2 = weights[a].detach().double().cpu(), weights[b].detach().double().cpu()
        if w2.shape[1] == w1.shape[0]:  # W2 W1 composes: alignment of W1's left and W2's right vectors
            al = alignment_matrix(w1.numpy(), w2.numpy())
            align.append({"first": a, "second": b, "mean_diag": al.mean_diag})
    return stats, spectra, align


def hidden_pool(pool: str | None, prefix: int = 1) -> Callable[[torch.Tensor], torch.Tensor]:
    """Hidden features as rows, following ``--pool``: tokens (N, T, E) -> every token a row (``tokens``;
    ``patches`` without the ``prefix`` tokens), token 0 (``cls``), else the mean over T; maps
    (N, C, ...) -> every position a row (``tokens``), else the mean over positions."""

    def rows(t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 3 and pool in TOKEN_POOLS and t.shape[1] > prefix:
            return token_rows(t, pool, "hidden", prefix)
        if t.ndim > 3 and pool == "tokens":
            return token_rows(t, pool, "hidden", prefix)
        if t.ndim == 3:
            return t[:, 0] if pool == "cls" else t.mean(1)
        return t.flatten(2).mean(2) if t.ndim > 3 else t.reshape(t.shape[0], -1)

    return rows


def check_finite_weights(module: nn.Module, source: str) -> None:
    """InputError naming the parameters / buffers that hold NaN or Inf (a diverged run's checkpoint)."""
    bad = [
        n for n, t in module.state_dict().items() if t.is_floating_point() and not bool(t.isfinite().all())
    ]
    if bad:
        raise InputError(
            f"the model's weights hold NaN/Inf ({', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''}); the "
            f"checkpoint '{source}' is from a diverged run: analyse an earlier one."
        )


def preprocess_for(opts: ModelOptions, loaded: LoadedModel, inputs: Inputs) -> Preprocess:
    """The user's --image-size / --channels / --mean / --std, else the model's own, else the dataset's."""
    own = loaded.preprocess
    return Preprocess(
        image_size=opts.image_size or own.get("image_size"),
        channels=opts.channels or own.get("channels"),
        mean=opts.mean if opts.mean is not None else own.get("mean"),
        std=opts.std if opts.std is not None else own.get("std"),
        dataset=inputs.dataset,
    )


def hidden_features(
    module: nn.Module, forward: Any, opts: ModelOptions, inputs: Inputs, prep: Preprocess, chosen: list[str]
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Feature spectra of the chosen layers on the first ``feature_points`` rows; layers that never ran."""
    if isinstance(module, torch.jit.ScriptModule) or not chosen:  # TorchScript takes no forward hooks
        return {}, []
    device = torch.device(opts.device)
    batches = (
        prep(x).to(device) for x in inputs.batches(opts.batch_size, opts.num_workers, opts.feature_points)
    )
    try:
        pool = hidden_pool(opts.pool, prefix_tokens(module))
        feats = feature_spectra(module, batches, layers=chosen, pool=pool, forward=forward, skip_idle=True)
    except (RuntimeError, ValueError, AssertionError, TypeError, IndexError) as e:
        raise model_failure(e, opts) from None
    return feats, [n for n in chosen if n not in feats]


def _metrics(
    opts: ModelOptions,
    loaded: LoadedModel,
    inputs: Inputs,
    emb: Collected,
    values: dict[str, Any],
    layers: tuple[dict[str, Any], dict[str, np.ndarray], list[dict[str, Any]]],
    feats: tuple[dict[str, np.ndarray], list[str]],
) -> dict[str, Any]:
    stats, _, align = layers
    spectra, skipped = feats
    model_info = {"kind": loaded.kind, "arch": opts.arch, **loaded.info}
    model_info.pop("ignored_keys", None)
    if emb.head is not None:
        model_info["classifier_head"] = emb.head
    return {
        "name": Path(str(opts.model).rstrip("/")).stem or str(opts.model),
        "source": str(opts.model),
        "data": inputs.name,
        "embedding": emb.name,
        "embedding_pool": emb.pool,
        "model": model_info,
        "outputs": emb.summary,
        **values,
        "layers": stats,
        "features": {
            k_: {"erank": effective_rank(v) if v.size and v.max() > 0 else 0.0, "dim": int(v.size)}
            for k_, v in spectra.items()
        },
        "features_skipped": skipped,
        "alignment": align,
    }


def n_le_d_warning(n: int, d: int, what: str = "inputs") -> str | None:
    """The warning when N <= D: the probe cannot show more than N - 1 directions."""
    if n > d:
        return None
    return (
        f"only {n} {what} for {d} dimensions (N <= D): at most {n - 1} directions can carry variance, so "
        f"'collapsed' dimensions and the rank measures are limited by the probe, not the model; use more "
        f"than {d} rows (--limit / --data)."
    )


def analyze_model(
    model: str | Path, data: str, out: str | Path = "runs/analyze", **options: Any
) -> dict[str, Any]:
    """Analyse ``model`` on ``data`` into ``out`` (see the module docstring); returns the metrics dict."""
    return run_analysis(ModelOptions(model=str(model), data=data, out=Path(out), **options))


def run_analysis(opts: ModelOptions) -> dict[str, Any]:
    """The whole ``analyze --model`` pass for validated options; writes only after every number exists."""
    from dimcollapse.analysis.analyze import Options, check_options, compute_metrics
    from dimcollapse.analysis.loading import load_labels

    t0 = time.perf_counter()
    opts = opts.validated()
    loaded = load_model(opts.model, opts.arch, opts.arch_kwargs, opts.trust_pickle)
    own = loaded.preprocess
    inputs = load_inputs(
        opts.data,
        opts.limit,
        opts.train_split,
        opts.key,
        opts.image_size or own.get("image_size"),
        opts.channels or own.get("channels"),
    )
    if inputs.n < 2:
        raise InputError(f"--data '{opts.data}' gave {inputs.n} input rows; at least 2 are needed.")
    labels = load_labels(opts.labels, inputs.n) if opts.labels is not None else inputs.labels
    prep = preprocess_for(opts, loaded, inputs)
    check_finite_weights(loaded.module, opts.model)
    module = loaded.module.to(torch.device(opts.device))
    forward = embed_function(opts.embed, loaded.forward)
    emb = collect(module, forward, opts, inputs, prep)
    aopts = Options(k=opts.k, map_method=opts.map_method)
    check_options(aopts, emb.rows.shape[0], str(opts.model))
    weight_patterns, blocks = split_layers(module, opts.layers)
    layers = layer_report(module, weight_patterns) if weight_patterns != [] else ({}, {}, [])
    chosen = _feature_layers(module, [*layers[0], *blocks])
    feats = hidden_features(module, forward, opts, inputs, prep, chosen)
    values, arrays = compute_metrics(emb.rows, aopts)
    metrics = _metrics(opts, loaded, inputs, emb, values, layers, feats)
    per_input = emb.rows.shape[0] // max(1, emb.inputs)
    if per_input > 1:  # token rows: each input gave per_input rows (and repeats its label)
        metrics.update(inputs=emb.inputs, rows_per_input=per_input)
        labels = None if labels is None else np.repeat(labels, per_input)
    what = "token rows" if per_input > 1 else "inputs"
    notes = [w for w in (n_le_d_warning(values["n"], values["d"], what), emb.note) if w]
    if feats[1]:
        more = f" (+{len(feats[1]) - 6} more)" if len(feats[1]) > 6 else ""
        notes.append(
            f"{len(feats[1])} layers never ran in this forward (e.g. momentum copies, a predictor) and have "
            f"no feature spectrum: {', '.join(feats[1][:6])}{more}"
        )
    metrics["warnings"] = notes
    if labels is not None:
        metrics["n_classes"] = len(np.unique(labels))
    files = _figures(metrics, arrays, labels, aopts, layers[1], feats[0]) if opts.figures else {}
    metrics["analyze_time_s"] = time.perf_counter() - t0
    _write(opts.out, metrics, files, layers[1], feats[0])
    return metrics


def _feature_layers(module: nn.Module, chosen: Sequence[str]) -> list[str]:
    modules = dict(module.named_modules())
    return [n for n in chosen if n in modules]


def _figures(
    metrics: dict[str, Any],
    arrays: dict[str, Any],
    labels: np.ndarray | None,
    aopts: Any,
    spectra: dict[str, np.ndarray],
    feats: dict[str, np.ndarray],
) -> dict[str, bytes]:
    from dimcollapse.analysis.analyze import render_figures

    files = render_figures(metrics["name"], arrays, labels, aopts)
    files.update(_layer_figures(spectra, feats))
    return files


def _write(
    out: Path,
    metrics: dict[str, Any],
    files: dict[str, bytes],
    spectra: dict[str, Any],
    feats: dict[str, Any],
) -> None:
    out_dir = ensure_writable_dir(out)
    arrays = {f"weight_sv/{k_}": v for k_, v in spectra.items()} | {
        f"feature_eig/{k_}": v for k_, v in feats.items()
    }
    savez: Any = np.savez
    atomic_save(out_dir / "layers.npz", lambda fh: savez(fh, **arrays))
    for fname, blob in files.items():
        atomic_write_bytes(out_dir / "figures" / fname, blob)
    if files:
        metrics["figures"] = sorted(f"figures/{f}" for f in files)
    write_record(out_dir / "metrics.json", EmbeddingRecord.from_fields(metrics))


def _layer_figures(spectra: dict[str, np.ndarray], feats: dict[str, np.ndarray]) -> dict[str, bytes]:
    from dimcollapse.analysis.analyze import _render
    from dimcollapse.viz import plots

    return _render(
        {
            "weight_spectra": lambda: plots.plot_log_spectrum(
                {k: v**2 for k, v in spectra.items()}, title="Squared singular values of the weights"
            ),
            "feature_spectra": lambda: plots.plot_log_spectrum(feats, title="Hidden-feature spectra"),
        }
    )


__all__ = ["analyze_model", "layer_report", "n_le_d_warning", "run_analysis"]
