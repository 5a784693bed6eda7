"""Evaluate a trained SSLModule: kNN (k from the config), linear probe, full diagnostics of r and z.

Evaluation reads no config and no datamodule: ``EvalSettings`` (resolved once from the config) says how,
``EvalData`` (the two splits' batches and the class count) says on what.

For DirectCLR (an objective with ``d0``) the kNN and linear probe are also reported on r[:, :d0]
(keys with the suffix ``_d0``). Used at the end of ``train`` and by ``dimcollapse eval CHECKPOINT``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dimcollapse import diagnostics as dg
from dimcollapse.errors import InputError
from dimcollapse.records import EmbeddingRecord, RunRecord, accuracy_key, knn_stem, write_record
from dimcollapse.records.accuracy import TOPS
from dimcollapse.training.checkpoint import data_info_changes, load_run
from dimcollapse.training.config import RunConfig
from dimcollapse.training.datamodule import DataSettings, SSLDataModule
from dimcollapse.training.evaluate_sgd import sgd_probe_accuracies
from dimcollapse.training.evaluation import extract_features, linear_probe
from dimcollapse.training.knn_eval import device_knn_accuracies
from dimcollapse.training.probe_sgd import SGDProbeSettings


@dataclass(frozen=True)
class EvalSettings:
    """What evaluation needs from a run's config, resolved once (``from_config``)."""

    knn_k: tuple[int, ...]
    temperature: float
    linear_probe: bool
    linear_probe_epochs: int
    linear_probe_weight_decay: float
    lid_k: int
    dataset: str  # recorded with the sizes: what a claim checks before comparing runs
    online_probe: bool = False  # the online linear probe trained during the run (a callback)
    online_probe_lr: float = 0.1
    linear_probe_kind: str = "lbfgs"  # lbfgs: the fast CPU probe; sgd: the papers' protocol
    sgd_probe: SGDProbeSettings = field(default_factory=SGDProbeSettings)
    sgd_probe_augment: bool = True
    knn_storage: str = "float32"

    @property
    def probe_description(self) -> str:
        """What the linear probe of this evaluation is, for every table that shows its accuracy."""
        if self.linear_probe_kind == "sgd":
            p = self.sgd_probe
            crops = "random-resized crops + flips" if self.sgd_probe_augment else "centre crops"
            return (
                f"SGD (papers' protocol): {p.epochs} epochs, lr {p.lr:g} cosine, batch {p.batch_size}, "
                f"momentum {p.momentum:g}, weight decay {p.weight_decay:g}, on {crops}"
            )
        n = self.linear_probe_epochs
        return f"L-BFGS (fast CPU evaluation): {n} iterations on standardised centre crops"

    @classmethod
    def from_config(cls, cfg: RunConfig) -> EvalSettings:
        """The evaluation settings of ``cfg`` (eval block + the dataset's name)."""
        e = cfg.eval
        return cls(
            tuple(int(k) for k in e.knn_k),
            float(e.temperature),
            bool(e.linear_probe),
            int(e.linear_probe_epochs),
            float(e.linear_probe_weight_decay),
            int(e.lid_k),
            str(cfg.data.name),
            bool(e.online_probe),
            float(e.online_probe_lr),
            linear_probe_kind=str(e.linear_probe_kind),
            sgd_probe=SGDProbeSettings(
                epochs=int(e.linear_probe_epochs),
                lr=float(e.sgd_probe_lr),
                batch_size=int(e.sgd_probe_batch_size),
                weight_decay=float(e.sgd_probe_weight_decay),
                seed=int(cfg.trainer.seed),
            ),
            sgd_probe_augment=bool(e.sgd_probe_augment),
            knn_storage=str(e.knn_storage),
        )


@dataclass
class EvalData:
    """The rows evaluation embeds: batches of (uint8 images, labels) of the train and test splits."""

    train: Iterable[tuple[Tensor, Tensor]]
    test: Iterable[tuple[Tensor, Tensor]]
    num_classes: int

    @classmethod
    def from_datamodule(cls, dm: SSLDataModule) -> EvalData:
        """The evaluation loaders of a set-up datamodule (rows capped by eval.max_train / max_test)."""
        return cls(dm.eval_loader(train=True), dm.eval_loader(train=False), dm.info.num_classes)


def _accuracies(
    variant: str, s: EvalSettings, xtr: Tensor, ytr: Tensor, xte: Tensor, yte: Tensor, num_classes: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    knn = device_knn_accuracies(xtr, ytr, xte, yte, s.knn_k, s.temperature, num_classes, s.knn_storage)
    for k, tops in knn.items():
        out.update({accuracy_key(knn_stem(k), t, variant): v for t, v in zip(TOPS, tops, strict=True)})
    if s.linear_probe and s.linear_probe_kind == "lbfgs":
        epochs, decay = s.linear_probe_epochs, s.linear_probe_weight_decay
        tops = linear_probe(xtr, ytr, xte, yte, num_classes, epochs, decay)
        out.update({accuracy_key("linear", t, variant): v for t, v in zip(TOPS, tops, strict=True)})
    return out


def _diagnostics(name: str, z: Tensor, max_points: int = 5000, k: int = 20) -> EmbeddingRecord:
    stats = dg.summarize(z, k=k, lid_max_points=max_points)
    return EmbeddingRecord.from_fields({key: float(v) for key, v in stats.items()}, output=name)


@torch.no_grad()
def evaluate_module(module: Any, data: EvalData, settings: EvalSettings) -> RunRecord:
    """The record of ``module`` on ``data``: kNN/linear accuracies (fractions), diagnostics of r and z
    and the evaluation settings (``details``)."""
    t0 = time.perf_counter()
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device

    def encode(x: Tensor) -> tuple[Tensor, Tensor]:
        return module.encode_eval(x)

    try:
        rtr, _, ytr = extract_features(encode, data.train, device)
        rte, zte, yte = extract_features(encode, data.test, device)
    finally:
        module.train(was_training)
    labelled = ytr >= 0
    rtr_l, ytr_l = rtr[labelled], ytr[labelled]
    c, s = data.num_classes, settings
    rec = RunRecord(accuracies=_accuracies("", s, rtr_l, ytr_l, rte, yte, c))
    if s.linear_probe and s.linear_probe_kind == "sgd":
        sgd = sgd_probe_accuracies(
            module, data.train, s.sgd_probe, s.sgd_probe_augment, rtr_l, ytr_l, rte, yte, c
        )
        rec.accuracies.update(sgd)
    d0 = module.objective.embedding_slice()
    if d0 is not None and d0 < rtr.shape[1]:
        rec.accuracies.update(_accuracies("d0", s, rtr_l[:, : int(d0)], ytr_l, rte[:, : int(d0)], yte, c))
        rec.details["d0"] = int(d0)
    rec.outputs = {"r": _diagnostics("r", rte, k=s.lid_k), "z": _diagnostics("z", zte, k=s.lid_k)}
    rec.details.update(
        {
            "eval_train_size": int(rtr_l.shape[0]),
            "eval_test_size": int(rte.shape[0]),
            "eval_dataset": s.dataset,
            "eval_knn_temperature": s.temperature,
            "eval_linear_probe_epochs": s.linear_probe_epochs if s.linear_probe else 0,
            "eval_linear_probe": s.probe_description if s.linear_probe else "none",
            "eval_sgd_probe": s.probe_description if s.linear_probe_kind == "sgd" else "none",
            "eval_knn_storage": s.knn_storage,
            "eval_time_s": time.perf_counter() - t0,
        }
    )
    return rec


def checkpoint_record(checkpoint: str | os.PathLike[str]) -> RunRecord:
    """The record of ``checkpoint`` (``training.steps``: its global step): its model rebuilt from the stored
    config and evaluated on its run's data (which must be the data it was trained on); nothing is written."""
    path = Path(checkpoint)
    run = load_run(path)
    cfg, module = run.config, run.module
    dm = SSLDataModule(DataSettings.from_config(cfg))
    dm.setup("eval")
    diff = data_info_changes(run.data_info, dm.info.__dict__)
    if diff:
        raise InputError(
            f"checkpoint '{path}' was trained on other data than '{cfg.data.name}' found now "
            f"({', '.join(diff)}); point $DIMCOLLAPSE_DATA / the data folder at the data of the run."
        )
    rec = evaluate_module(module, EvalData.from_datamodule(dm), EvalSettings.from_config(cfg))
    rec.training.steps = int(run.checkpoint.get("global_step", 0))
    return rec


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Rebuild the model of ``checkpoint`` from its stored config, evaluate it and write metrics.json
    next to the checkpoint (or into ``out_dir``); returns the metrics."""
    path = Path(checkpoint)
    record = checkpoint_record(path)
    record.details.update({"checkpoint": str(path), "step": record.training.steps})
    target = Path(out_dir) if out_dir is not None else path.parent
    write_record(target / "metrics.json", record)
    return record.to_json()
