"""Evaluate a trained SSLModule: kNN (k from the config), linear probe, full diagnostics of r and z.

Evaluation reads no config and no datamodule: ``EvalSettings`` (resolved once from the config) says how,
``EvalData`` (the two splits' batches and the class count) says on what.

For DirectCLR (an objective with ``d0``) the kNN and linear probe are also reported on r[:, :d0]
(keys with the suffix ``_d0``). Used at the end of ``train`` and by ``dimcollapse eval CHECKPOINT``.

Under torch.distributed every process evaluates (collectively): it encodes its share of both splits
(training/eval_shard.py) and keeps the features on its device; kNN searches each process's share of the
bank and merges the candidates (training/knn_eval.py); the L-BFGS and SGD probes sum their gradients over
processes. Only the test split's r and z go to process 0, for their diagnostics; process 0's record is
the run's (the others' carry the same accuracies and no diagnostics).
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
from dimcollapse.training.eval_shard import Split, encode_split, gather_rows_to_zero, shard_positions
from dimcollapse.training.evaluate_sgd import sgd_probe_accuracies
from dimcollapse.training.knn_eval import STORAGE, Bank, sharded_knn_accuracies
from dimcollapse.training.probe_lbfgs import LBFGSProbeSettings, fit_lbfgs_probe, lbfgs_probe_topk
from dimcollapse.training.probe_sgd import SGDProbeSettings
from dimcollapse.utils.distributed import world_size


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
    probe_dtype: str = "float32"  # the L-BFGS probe's dtype (float64 measured: same accuracy, 2-3x time)
    linear_probe_tolerance: float = 1e-9

    @property
    def lbfgs(self) -> LBFGSProbeSettings:
        """The L-BFGS probe's settings."""
        return LBFGSProbeSettings(
            self.linear_probe_epochs,
            self.linear_probe_weight_decay,
            self.probe_dtype,
            self.linear_probe_tolerance,
        )

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
        return f"{self.lbfgs.describe()} on standardised centre crops"

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
            probe_dtype=str(e.probe_dtype),
            linear_probe_tolerance=float(e.linear_probe_tolerance),
        )


@dataclass
class EvalData:
    """The rows evaluation embeds: batches of (uint8 images, labels) of the train and test splits."""

    train: Iterable[tuple[Tensor, Tensor]]
    test: Iterable[tuple[Tensor, Tensor]]
    num_classes: int
    train_crops: Iterable[tuple[Any, Tensor]] | None = None  # the SGD probe's crops of the full images

    @classmethod
    def from_datamodule(cls, dm: SSLDataModule) -> EvalData:
        """This process's evaluation loaders of a set-up datamodule (rows capped by eval.max_train /
        max_test; rows rank, rank + W, ... of each split under torch.distributed)."""
        train, test = dm.eval_loader(train=True, shard=True), dm.eval_loader(train=False, shard=True)
        return cls(train, test, dm.info.num_classes, dm.probe_crop_loader(shard=True))


def _probe_batches(data: EvalData) -> Iterable[tuple[Any, Tensor]]:
    """The SGD probe's augmented epochs: the loader's full-image crops if any, else the images."""
    return data.train if data.train_crops is None else data.train_crops


def _accuracies(
    variant: str, s: EvalSettings, tr: Split, te: Split, num_classes: int, details: dict[str, Any]
) -> dict[str, float]:
    """kNN for every k and the L-BFGS probe on this process's shares (collective)."""
    out: dict[str, float] = {}
    bank = Bank.of(tr.x, tr.y, tr.pos, s.knn_storage)
    knn = sharded_knn_accuracies(bank, te.x, te.y, s.knn_k, s.temperature, num_classes)
    del bank
    for k, tops in knn.items():
        out.update({accuracy_key(knn_stem(k), t, variant): v for t, v in zip(TOPS, tops, strict=True)})
    if s.linear_probe and s.linear_probe_kind == "lbfgs":
        probe = fit_lbfgs_probe(tr.x, tr.y, num_classes, s.lbfgs)
        linear = lbfgs_probe_topk(probe, te.x, te.y)
        out.update({accuracy_key("linear", t, variant): linear[t] for t in TOPS})
        suffix = f"_{variant}" if variant else ""
        details["eval_linear_probe_solver"] = "lbfgs"
        details["eval_linear_probe_dtype"] = s.lbfgs.dtype
        details[f"eval_linear_probe_iterations{suffix}"] = probe.iterations
        details[f"eval_linear_probe_evaluations{suffix}"] = probe.evaluations
    return out


def _diagnostics(name: str, z: Tensor, max_points: int = 5000, k: int = 20) -> EmbeddingRecord:
    stats = dg.summarize(z, k=k, lid_max_points=max_points)
    return EmbeddingRecord.from_fields({key: float(v) for key, v in stats.items()}, output=name)


@torch.no_grad()
def evaluate_module(module: Any, data: EvalData, settings: EvalSettings) -> RunRecord:
    """The record of ``module`` on ``data``: kNN/linear accuracies (fractions), diagnostics of r and z
    and the evaluation settings (``details``). Collective under torch.distributed (module docstring)."""
    t0 = time.perf_counter()
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    try:
        store = STORAGE.get(settings.knn_storage, torch.float32)  # training features on the device
        rtr, _, ytr = encode_split(module.encode_eval, data.train, device, store)
        rte, zte, yte = encode_split(module.encode_eval, data.test, device)
    finally:
        module.train(was_training)
    labelled = ytr >= 0
    tr = Split(rtr[labelled], ytr[labelled], shard_positions(rtr.shape[0])[labelled.cpu()].to(device))
    te = Split(rte, yte, shard_positions(rte.shape[0]))
    c, s = data.num_classes, settings
    details: dict[str, Any] = {}
    rec = RunRecord(accuracies=_accuracies("", s, tr, te, c, details))
    if s.linear_probe and s.linear_probe_kind == "sgd":
        rec.accuracies.update(
            sgd_probe_accuracies(module, _probe_batches(data), s.sgd_probe, s.sgd_probe_augment, tr, te, c)
        )
    d0 = module.objective.embedding_slice()
    if d0 is not None and d0 < rtr.shape[1]:
        rec.accuracies.update(_accuracies("d0", s, tr.columns(int(d0)), te.columns(int(d0)), c, details))
        rec.details["d0"] = int(d0)
    r_all, z_all = gather_rows_to_zero(rte), gather_rows_to_zero(zte)
    if r_all is not None and z_all is not None:
        rec.outputs = {
            "r": _diagnostics("r", r_all.cpu(), k=s.lid_k),
            "z": _diagnostics("z", z_all.cpu(), k=s.lid_k),
        }
    rec.details.update(
        {
            "eval_train_size": tr.total(),
            "eval_test_size": te.total(),
            "eval_dataset": s.dataset,
            "eval_knn_temperature": s.temperature,
            "eval_linear_probe_epochs": s.linear_probe_epochs if s.linear_probe else 0,
            "eval_linear_probe": s.probe_description if s.linear_probe else "none",
            "eval_sgd_probe": s.probe_description if s.linear_probe_kind == "sgd" else "none",
            "eval_knn_storage": s.knn_storage,
            "eval_processes": world_size(),
            **details,
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
