"""Per-run artifacts for the report, computed once from the final checkpoint on held-out test images.

``artifacts.npz`` holds: ``spectrum_r``, ``spectrum_z`` (covariance spectra on test images),
``weight/<layer>`` (singular values of every encoder + projector weight), ``feature/<block>``
(covariance spectra of each backbone block's output, spatially mean-pooled), ``alignment`` (|A| of
the backbone's last two composable weight layers, the same pair in every run so that runs compare,
A = V2^T U1; convolutions read through the sum of their
kernel over space, i.e. their action on spatially constant inputs), ``r_sample`` / ``labels_sample``
(a 2-D map sample). ``artifacts.json`` holds the scalar metrics derived from them:

- ``weight_erank_mean``: mean over backbone layers of erank(sigma^2) / min(out, in) (scale-free),
- ``tail_eig_r``: mean of log10(lambda_k / lambda_1) over the smallest quarter of r's spectrum,
- ``alignment_mean_diag``: mean |diag A|; ``alignment_random_mean`` / ``_low`` / ``_high``: the same score of
  random orthonormal bases of the same sizes (mean and 5-95% band over 64 draws), the level of "no alignment",
- ``artifacts_version``: the layout's version (older artifacts are recomputed by the report).

``rank_limit/weight/<layer>`` and ``rank_limit/feature/<block>`` hold (bound, width) for layers whose rank is
bounded by construction below their width (e.g. the first conv of a 1-channel image: rank <= 9 of 16), and
for the blocks whose output is such a layer's output (itself or after a BatchNorm).
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dimcollapse import diagnostics as dg
from dimcollapse.diagnostics.alignment import random_alignment
from dimcollapse.diagnostics.weights import rank_bound
from dimcollapse.errors import InputError
from dimcollapse.utils.atomic import atomic_write_bytes, atomic_write_json

FINAL, LAST = "final.ckpt", "last.ckpt"
ARTIFACTS_VERSION = 2


def find_checkpoint(run_dir: Path) -> Path:
    """The run's final checkpoint (else its last one)."""
    for name in (FINAL, LAST):
        p = run_dir / "checkpoints" / name
        if p.is_file():
            return p
    raise InputError(
        f"run folder '{run_dir}' has no checkpoints/{FINAL}; train it first (dimcollapse train)."
    )


def load_run_module(run_dir: Path) -> tuple[Any, Any]:
    """(SSLModule with the final weights, its SSLDataModule set up for evaluation)."""
    from dimcollapse.training.checkpoint import load_run
    from dimcollapse.training.datamodule import DataSettings, SSLDataModule

    run = load_run(find_checkpoint(run_dir))
    dm = SSLDataModule(DataSettings.from_config(run.config))
    dm.setup("eval")
    return run.module, dm


def _as_linear_map(w: Tensor) -> Tensor:
    """A weight as the (out x in) matrix it applies to spatially constant inputs."""
    return w.sum(dim=tuple(range(2, w.ndim))) if w.ndim > 2 else w


def last_composable_pair(mats: list[tuple[str, Tensor]]) -> tuple[str, str] | None:
    """Names of the last two consecutive weight layers with in(W2) == out(W1)."""
    for (n1, w1), (n2, w2) in reversed(list(itertools.pairwise(mats))):
        if _as_linear_map(w2).shape[1] == _as_linear_map(w1).shape[0]:
            return n1, n2
    return None


def _weight_erank_mean(spectra: dict[str, np.ndarray]) -> float:
    vals = [dg.effective_rank(s**2) / len(s) for s in spectra.values() if len(s) > 1 and s.max() > 0]
    return float(np.mean(vals)) if vals else float("nan")


def tail_eigenvalues(spectrum: np.ndarray, fraction: float = 0.25) -> float:
    """Mean log10(lambda_k / lambda_1) over the smallest ``fraction`` of a descending spectrum."""
    s = np.clip(np.asarray(spectrum, dtype=np.float64), 1e-300, None)
    n = max(1, round(len(s) * fraction))
    return float(np.mean(np.log10(np.maximum(s[-n:] / s[0], 1e-12))))


def rank_limits(backbone: nn.Module) -> dict[str, tuple[int, int]]:
    """(bound, width) of every rank-limited weight layer (``weight/backbone.<name>``) and of the top-level
    blocks that output such a layer's result unchanged up to a per-channel affine map (``feature/<name>``)."""
    out: dict[str, tuple[int, int]] = {}
    for name, m in backbone.weight_layers():  # type: ignore[operator]
        w = getattr(m, "weight", None)
        if isinstance(w, Tensor) and w.ndim >= 2:
            bound, width = rank_bound(tuple(w.shape))
            if bound < width:
                out[f"weight/backbone.{name}"] = (bound, width)
    carried: tuple[int, int] | None = None
    for name, child in backbone.named_children():
        if f"weight/backbone.{name}" in out:
            carried = out[f"weight/backbone.{name}"]
        elif not isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d, nn.Identity)):
            carried = None
        if carried is not None:
            out[f"feature/{name}"] = carried
    return out


def _alignment(w1: Tensor, w2: Tensor) -> tuple[np.ndarray, dict[str, float]]:
    """|A| of two consecutive layers and its scores next to random orthonormal bases of the same sizes."""
    m1, m2 = _as_linear_map(w1), _as_linear_map(w2)
    al = dg.alignment_matrix(m1, m2)
    rand = random_alignment(int(m1.shape[0]), min(m1.shape), min(m2.shape))
    return np.abs(np.asarray(al.matrix)), {
        "alignment_mean_diag": float(al.mean_diag),
        "alignment_random_mean": rand.mean,
        "alignment_random_low": rand.low,
        "alignment_random_high": rand.high,
    }


@torch.no_grad()
def compute_artifacts(run_dir: str | Path, max_points: int = 2000, seed: int = 0) -> dict[str, float]:
    """Write ``artifacts.npz`` / ``artifacts.json`` for a finished run; return the scalar metrics."""
    run = Path(run_dir)
    module, dm = load_run_module(run)
    _, (xte, yte) = dm.eval_sets()
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(xte), generator=g)[: min(max_points, len(xte))]
    x, y = xte[idx], yte[idx]
    rs, zs, inputs = [], [], []
    for chunk in torch.split(torch.arange(len(x)), 256):
        xi = module.views.eval_transform(x[chunk])
        r, z = module.model.encode(xi)
        rs.append(r.float())
        zs.append(z.float())
        inputs.append(xi)
    r_all, z_all = torch.cat(rs), torch.cat(zs)
    backbone: nn.Module = module.model.backbone
    arrays: dict[str, np.ndarray] = {
        "spectrum_r": dg.covariance_spectrum(r_all),
        "spectrum_z": dg.covariance_spectrum(z_all),
        "r_sample": r_all[:1000].numpy().astype(np.float32),
        "labels_sample": y[:1000].numpy().astype(np.int64),
    }
    wspec = dg.weight_spectra(backbone)
    for name, s in wspec.items():
        arrays[f"weight/backbone.{name}"] = s
    for name, s in dg.weight_spectra(module.model.projector).items():
        arrays[f"weight/projector.{name}"] = s
    blocks = [n for n, _ in backbone.named_children()]
    fspec = dg.feature_spectra(backbone, inputs, layers=blocks, pool="mean")
    for name, s in fspec.items():
        arrays[f"feature/{name}"] = s
    mats = [(f"backbone.{n}", m.weight.detach()) for n, m in backbone.weight_layers()]  # type: ignore[operator]
    for key, limit in rank_limits(backbone).items():
        arrays[f"rank_limit/{key}"] = np.array(limit, dtype=np.int64)
    metrics = {
        "weight_erank_mean": _weight_erank_mean(wspec),
        "tail_eig_r": tail_eigenvalues(arrays["spectrum_r"]),
        "artifacts_version": ARTIFACTS_VERSION,
    }
    pair = last_composable_pair(mats)
    if pair is not None:
        w = dict(mats)
        arrays["alignment"], scores = _alignment(w[pair[0]], w[pair[1]])
        arrays["alignment_layers"] = np.array(list(pair))
        metrics.update(scores)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    atomic_write_bytes(run / "artifacts.npz", buf.getvalue())
    atomic_write_json(run / "artifacts.json", metrics)
    return metrics
