"""DC fig. 11: deeper linear (and ReLU) networks collapse more embedding dimensions.

All (depth, nonlinearity) pairs train at once: each replica is a stack of ``max(depths)`` layers whose
first L are trained and the rest stay the identity with no nonlinearity after them (padding).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dimcollapse.diagnostics.threshold import COLLAPSE_THRESHOLD
from dimcollapse.errors import ConfigError
from dimcollapse.theory.chain import default_init, train_chain, training_dtype
from dimcollapse.theory.data import gaussian_data
from dimcollapse.theory.verdict import Claim, fmt

NONLINEARITIES = ("linear", "relu")
INITS = ("default", "spectral")


@dataclass
class DepthConfig:
    """Settings of DC fig. 11 (defaults: issue 3: dot loss, 5,000 steps)."""

    steps: int = 5000
    lr: float = 0.01
    seed: int = 0
    loss: str = "dot"
    depths: tuple[int, ...] = (1, 2, 3, 4)
    nonlinearities: tuple[str, ...] = NONLINEARITIES
    noise_std: float = 0.001
    init: str = "spectral"  # U diag(exp(-0.35 k)) V^T per layer, as in fig. 5; "default" = nn.Linear init
    n: int = 10_000
    dim: int = 16
    batch: int = 128
    record_every: int = 250
    rel_floor: float = COLLAPSE_THRESHOLD
    dtype: str = "float32"


def _check(cfg: DepthConfig) -> None:
    if not cfg.depths or any(int(d) < 1 for d in cfg.depths):
        raise ConfigError(f"depths must be integers >= 1, got {list(cfg.depths)}.")
    bad = [n for n in cfg.nonlinearities if n not in NONLINEARITIES]
    if bad or not cfg.nonlinearities:
        raise ConfigError(f"unknown nonlinearity {bad}. Valid: {', '.join(NONLINEARITIES)}.")
    if cfg.init not in INITS:
        raise ConfigError(f"unknown init '{cfg.init}'. Valid: {', '.join(INITS)}.")
    if not (cfg.noise_std >= 0 and np.isfinite(cfg.noise_std)):
        raise ConfigError(f"noise std must be finite and >= 0, got {cfg.noise_std}.")


def run_depth(cfg: DepthConfig | None = None) -> dict[str, Any]:
    """Train every (L, nonlinearity); return the final embedding spectra and collapsed-dimension counts."""
    from dimcollapse.diagnostics import collapsed_dimensions
    from dimcollapse.theory.alignment import spectral_init

    cfg = cfg or DepthConfig()
    _check(cfg)
    g = torch.Generator().manual_seed(cfg.seed)
    data = gaussian_data(cfg.n, cfg.dim, g)
    pairs = [(nl, int(d)) for nl in cfg.nonlinearities for d in cfg.depths]
    r, top = len(pairs), max(int(d) for d in cfg.depths)
    eye = torch.eye(cfg.dim, dtype=torch.float64).expand(r, -1, -1)
    weights, trainable, slopes = [], [], []
    for layer in range(top):
        if cfg.init == "default":
            w = default_init(1, cfg.dim, g).expand(r, -1, -1).clone()  # same W_l(0) for every replica
        else:
            w = spectral_init(cfg.dim, 0.35, g).expand(r, -1, -1).clone()
        on = torch.tensor([float(layer < d) for _, d in pairs], dtype=torch.float64).view(r, 1, 1)
        weights.append(torch.where(on > 0, w, eye).clone())
        trainable.append(on)
        if layer < top - 1:  # ReLU after layer l only inside a ReLU replica's own stack
            relu = [nl == "relu" and layer < d - 1 for nl, d in pairs]
            slopes.append(torch.tensor([0.0 if x else 1.0 for x in relu], dtype=torch.float64).view(r, 1, 1))
    noise = torch.full((r, cfg.dim), cfg.noise_std, dtype=torch.float64)
    dt = training_dtype(cfg.dtype)
    weights, data = [w.to(dt) for w in weights], data.to(dt)
    hist = train_chain(
        weights,
        data,
        noise,
        steps=cfg.steps,
        lr=cfg.lr,
        loss=cfg.loss,
        batch=cfg.batch,
        slopes=slopes if top > 1 else None,
        trainable=trainable,
        generator=g,
        record_every=cfg.record_every,
        record_spectra=True,
    )
    spectra = np.stack(hist.spectra)  # (T, R, d)
    res: dict[str, Any] = {
        "experiment": "depth",
        "config": dict(cfg.__dict__),
        "steps_recorded": hist.steps,
        "diverged_at": hist.diverged_at,
        "depths": [int(d) for d in cfg.depths],
        "nonlinearities": list(cfg.nonlinearities),
        "spectra": {},
        "collapsed": {},
        "collapsed_initial": {},
        "collapsed_history": {},
    }
    for nl in cfg.nonlinearities:
        idx = [i for i, p in enumerate(pairs) if p[0] == nl]
        res["spectra"][nl] = spectra[-1, idx].tolist()
        res["collapsed"][nl] = [
            int(collapsed_dimensions(spectra[-1, i], rel_floor=cfg.rel_floor)) for i in idx
        ]
        res["collapsed_initial"][nl] = [
            int(collapsed_dimensions(spectra[0, i], rel_floor=cfg.rel_floor)) for i in idx
        ]
        res["collapsed_history"][nl] = [
            [int(collapsed_dimensions(spectra[t, i], rel_floor=cfg.rel_floor)) for t in range(len(spectra))]
            for i in idx
        ]
    res["claims"] = [c.to_dict() for c in depth_claims(res)]
    return res


def depth_claims(res: dict[str, Any]) -> list[Claim]:
    """Verdicts of DC fig. 11 computed from a run's results."""
    cfg = res["config"]
    name = f"depth ({cfg['loss']} loss, {cfg['steps']} steps)"
    depths = res["depths"]
    out = []
    for nl in res["nonlinearities"]:
        c = res["collapsed"][nl]
        c0 = res["collapsed_initial"][nl]
        meas = f"L = {depths}: collapsed dims {c} (at init {c0})"
        if nl == "linear" and 1 in depths:
            out.append(Claim(name, "linear, L = 1: no collapsed dimension", meas, c[depths.index(1)] == 0))
        order = np.argsort(depths)
        cs = [c[i] for i in order]
        grows = all(a <= b for a, b in itertools.pairwise(cs)) and cs[-1] > cs[0]
        out.append(
            Claim(name, f"{nl}: the number of collapsed dimensions grows with depth", meas, bool(grows))
        )
        if nl == "linear":
            added = [a - b for a, b in zip(c, c0, strict=True)]
            out.append(
                Claim(
                    name,
                    "linear: training itself (not the initialisation) adds collapsed dimensions as L grows",
                    f"L = {depths}: final - initial collapsed dims = {added}",
                    all(a <= b for a, b in itertools.pairwise([added[i] for i in order])) and max(added) > 0,
                )
            )
        if nl == "relu":
            deep = [c[i] for i, d in enumerate(depths) if d > 1]
            out.append(
                Claim(
                    name,
                    "ReLU networks collapse too (some L > 1 has collapsed dimensions)",
                    meas,
                    bool(deep) and max(deep) > 0,
                )
            )
    _ = fmt
    return out
