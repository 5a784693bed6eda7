"""Evaluate a trained SSLModule: kNN (k from the config), linear probe, full diagnostics of r and z.

For DirectCLR (an objective with ``d0``) the kNN and linear probe are also reported on r[:, :d0]
(keys with the suffix ``_d0``). Used at the end of ``train`` and by ``dimcollapse eval CHECKPOINT``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dimcollapse import diagnostics as dg
from dimcollapse.training.checkpoint import load_checkpoint, load_model_state
from dimcollapse.training.config import RunConfig, from_dict
from dimcollapse.training.datamodule import SSLDataModule
from dimcollapse.training.evaluation import extract_features, knn_accuracies, linear_probe
from dimcollapse.utils.atomic import atomic_write_json


def _accuracies(
    prefix: str, cfg: RunConfig, xtr: Tensor, ytr: Tensor, xte: Tensor, yte: Tensor, num_classes: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    ks = [int(k) for k in cfg.eval.knn_k]
    for k, (top1, top5) in knn_accuracies(xtr, ytr, xte, yte, ks, cfg.eval.temperature, num_classes).items():
        out[f"knn_k{k}_top1{prefix}"], out[f"knn_k{k}_top5{prefix}"] = top1, top5
    if cfg.eval.linear_probe:
        top1, top5 = linear_probe(
            xtr, ytr, xte, yte, num_classes, cfg.eval.linear_probe_epochs, cfg.eval.linear_probe_weight_decay
        )
        out[f"linear_top1{prefix}"], out[f"linear_top5{prefix}"] = top1, top5
    return out


def _diagnostics(name: str, z: Tensor, max_points: int = 5000, k: int = 20) -> dict[str, float]:
    stats = dg.summarize(z, k=k, lid_max_points=max_points)
    return {f"{key}_{name}": float(v) for key, v in stats.items()}


@torch.no_grad()
def evaluate_module(module: Any, dm: SSLDataModule, cfg: RunConfig) -> dict[str, Any]:
    """Metrics of ``module`` on the data of ``dm``: kNN/linear accuracies (fractions) and diagnostics."""
    t0 = time.perf_counter()
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device

    def encode(x: Tensor) -> tuple[Tensor, Tensor]:
        return module.encode_eval(x)

    try:
        rtr, _, ytr = extract_features(encode, dm.eval_loader(train=True), device)
        rte, zte, yte = extract_features(encode, dm.eval_loader(train=False), device)
    finally:
        module.train(was_training)
    labelled = ytr >= 0
    rtr_l, ytr_l = rtr[labelled], ytr[labelled]
    c = dm.info.num_classes
    metrics: dict[str, Any] = {}
    metrics.update(_accuracies("", cfg, rtr_l, ytr_l, rte, yte, c))
    d0 = getattr(module.model.objective, "d0", None)
    if d0 is not None and int(d0) < rtr.shape[1]:
        metrics.update(_accuracies("_d0", cfg, rtr_l[:, : int(d0)], ytr_l, rte[:, : int(d0)], yte, c))
        metrics["d0"] = int(d0)
    metrics.update(_diagnostics("r", rte, k=cfg.eval.lid_k))
    metrics.update(_diagnostics("z", zte, k=cfg.eval.lid_k))
    metrics["eval_train_size"] = int(rtr_l.shape[0])
    metrics["eval_test_size"] = int(rte.shape[0])
    metrics["eval_dataset"] = str(cfg.data.name)  # with the sizes: what a claim checks before comparing
    metrics["eval_knn_temperature"] = float(cfg.eval.temperature)
    metrics["eval_linear_probe_epochs"] = int(cfg.eval.linear_probe_epochs) if cfg.eval.linear_probe else 0
    metrics["eval_time_s"] = time.perf_counter() - t0
    return metrics


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Rebuild the model of ``checkpoint`` from its stored config, evaluate it and write metrics.json
    next to the checkpoint (or into ``out_dir``); returns the metrics."""
    from dimcollapse.training.module import SSLModule

    path = Path(checkpoint)
    ckpt = load_checkpoint(path)
    hp = ckpt.get("hyper_parameters") or {}
    if "config" not in hp or "data_info" not in hp:
        from dimcollapse.errors import InputError

        raise InputError(
            f"checkpoint '{path}' holds no dimcollapse config; it was not written by dimcollapse train."
        )
    cfg = from_dict(hp["config"])
    module = SSLModule(hp["config"], hp["data_info"])
    load_model_state(module, path)
    dm = SSLDataModule(cfg)
    dm.setup("eval")
    saved, now = hp["data_info"], dm.info.__dict__
    diff = [f"{k} {saved[k]} -> {now[k]}" for k in now if k in saved and saved[k] != now[k]]
    if diff:
        from dimcollapse.errors import InputError

        raise InputError(
            f"checkpoint '{path}' was trained on other data than '{cfg.data.name}' found now "
            f"({', '.join(diff)}); point $DIMCOLLAPSE_DATA / the data folder at the data of the run."
        )
    metrics = evaluate_module(module, dm, cfg)
    metrics["checkpoint"] = str(path)
    metrics["step"] = metrics["steps"] = int(ckpt.get("global_step", 0))
    target = Path(out_dir) if out_dir is not None else path.parent
    atomic_write_json(target / "metrics.json", metrics)
    return metrics
