"""Data for a run: uint8 batches indexed by the global step (exact resume), a held-out probe batch, eval sets.

The batch of global step s is a pure function of (seed, s, rank): epoch e = s // steps_per_epoch draws a
permutation from seed and e, and step s takes its slice. A resumed run therefore sees the same batches as
an uninterrupted one, even when it was killed in the middle of an epoch. With gradient accumulation over A
micro-batches, optimizer step s takes micro-batches s*A ... s*A + A - 1 (the same rule in micro-batches),
and an epoch holds pool // (batch_size x processes x A) whole optimizer steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from dimcollapse.data.crops import CropSpec
from dimcollapse.data.decode import Decoder, choose_decoder
from dimcollapse.data.loader_crops import (
    CropSamples,
    EncodedBatch,
    EncodedSamples,
    collate_encoded,
    decode_crops,
)
from dimcollapse.errors import ConfigError, InputError
from dimcollapse.registry import build
from dimcollapse.training.config import RunConfig
from dimcollapse.training.step_sampler import EpochBatches, StepBatchSampler, epoch_seed
from dimcollapse.utils.distributed import rank, world_size

__all__ = [
    "DataInfo",
    "DataSettings",
    "SSLDataModule",
    "StepBatchSampler",
    "epoch_seed",
    "planned_world_size",
]


@dataclass(frozen=True)
class DataSettings:
    """What the datamodule needs, resolved once from a run's config (``from_config``, in ``plan_run``).

    ``probe_size`` is 0 when the monitor is off; ``eval_max_*`` cap the evaluation rows (None: all)."""

    name: str
    root: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    fraction: float = 1.0
    batch_size: int = 256
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    prefetch_factor: int | None = None
    accumulate: int = 1  # micro-batches per optimizer step
    seed: int = 0
    probe_size: int = 0
    eval_max_train: int | None = None
    eval_max_test: int | None = None
    eval_batch_size: int = 1024

    @classmethod
    def from_config(cls, cfg: RunConfig) -> DataSettings:
        """The settings of ``cfg``: data block, seed, monitor probe size (0 when off), evaluation caps."""
        d = cfg.data
        return cls(
            name=str(d.name),
            root=d.root,
            kwargs=dict(d.kwargs),
            fraction=float(d.fraction),
            batch_size=int(d.batch_size),
            num_workers=int(d.num_workers),
            pin_memory=bool(d.pin_memory) and torch.cuda.is_available(),
            persistent_workers=bool(d.persistent_workers),
            prefetch_factor=d.prefetch_factor,
            accumulate=int(cfg.trainer.accumulate_grad_batches),
            seed=int(cfg.trainer.seed),
            probe_size=int(cfg.monitor.probe_size) if cfg.monitor.enabled else 0,
            eval_max_train=cfg.eval.max_train,
            eval_max_test=cfg.eval.max_test,
            eval_batch_size=int(cfg.eval.batch_size),
        )


@dataclass
class DataInfo:
    """What the model and the schedule need to know about the data."""

    channels: int
    image_size: int
    num_classes: int
    train_size: int
    steps_per_epoch: int


class _BatchGather(Dataset[tuple[Tensor, Tensor]]):
    """Gathers a whole batch of rows at once from in-memory uint8 images (no per-item collate)."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, idx: Any) -> tuple[Tensor, Tensor]:
        i = torch.as_tensor(idx, dtype=torch.int64)
        return self.images[i], self.labels[i]


def _random_rows(rows: Tensor, cap: int | None, seed: int) -> Tensor:
    """At most ``cap`` of ``rows``: a seeded random subset, sorted (all of them when cap is None)."""
    if cap is None or cap >= rows.numel():
        return rows
    pick = torch.randperm(rows.numel(), generator=torch.Generator().manual_seed(seed))[:cap]
    return rows[pick.sort().values]


def _as_tensors(dataset: Any, indices: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(images uint8 [N, C, H, W], labels int64 [N]) of an in-memory dataset or by iterating a lazy one."""
    if hasattr(dataset, "images") and hasattr(dataset, "labels"):
        images, labels = dataset.images, dataset.labels
        if indices is not None:
            images, labels = images[indices], labels[indices]
        return images, labels.long()
    idx = indices.tolist() if indices is not None else range(len(dataset))
    items = [dataset[i] for i in idx]
    return torch.stack([it[0] for it in items]), torch.tensor([int(it[1]) for it in items])


def planned_world_size(cfg: RunConfig) -> int:
    """Number of training processes the config asks for (devices x nodes); 'auto' / -1 count devices."""
    return _devices_per_node(cfg) * max(1, int(cfg.trainer.num_nodes))


def _devices_per_node(cfg: RunConfig) -> int:
    devices = cfg.trainer.devices
    if isinstance(devices, (list, tuple)):
        return max(1, len(devices))
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices > 0:
        return devices
    if cfg.trainer.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return max(1, torch.cuda.device_count())
    return 1


class SSLDataModule(L.LightningDataModule):
    """Training pool (seeded fraction, minus the probe batch), probe images, and the eval train/test sets."""

    def __init__(self, settings: DataSettings, world_size: int = 1, rank: int = 0) -> None:
        super().__init__()
        self.settings = settings
        self.world_size, self.rank = world_size, rank
        self._ready = False
        self.crop_specs: list[CropSpec] = []  # set by use_loader_crops: crops cut from the full image
        self.decoder = Decoder("pil", "not chosen yet")
        self._eval_loaders: dict[tuple[bool, int, int], DataLoader] = {}

    def setup(self, stage: str | None = None) -> None:
        """Load the datasets once; split off the probe batch; check the batch fits."""
        if self._ready:
            return
        d, seed = self.settings, self.settings.seed
        kwargs = dict(d.kwargs)
        self.train_set = build("dataset", d.name, root=d.root, train=True, **kwargs)
        self.test_set = build("dataset", d.name, root=d.root, train=False, **kwargs)
        n_all = len(self.train_set)
        gen = torch.Generator().manual_seed(int(seed) + 101)
        keep = torch.randperm(n_all, generator=gen)[: max(1, round(d.fraction * n_all))].sort().values
        probe_n = min(d.probe_size, max(0, keep.numel() // 5))  # never more than a fifth of the data
        order = torch.randperm(keep.numel(), generator=gen)
        self.probe_index = keep[order[:probe_n]].sort().values
        self.pool_index = keep[order[probe_n:]].sort().values
        self.eval_index = keep
        global_batch = d.batch_size * self.world_size * d.accumulate
        if global_batch > self.pool_index.numel():
            acc = f" x {d.accumulate} accumulated micro-batches" if d.accumulate > 1 else ""
            raise InputError(
                f"batch size {d.batch_size} x {self.world_size} process(es){acc} = {global_batch} is larger "
                f"than the {self.pool_index.numel()} training images of '{d.name}' (fraction {d.fraction}, "
                f"{probe_n} held out for the monitor); lower data.batch_size or raise data.fraction."
            )
        self.in_memory = hasattr(self.train_set, "images")
        if self.in_memory:
            self.pool_images, self.pool_labels = _as_tensors(self.train_set, self.pool_index)
        first, _ = self.train_set[0]
        self.info = DataInfo(
            channels=int(first.shape[0]),
            image_size=int(first.shape[-1]),
            num_classes=int(self.train_set.num_classes),
            train_size=int(self.pool_index.numel()),
            steps_per_epoch=int(self.pool_index.numel()) // global_batch,
        )
        self._ready = True

    def _global_step(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.global_step) if trainer is not None else 0

    def sampler(self, seeded: bool = False) -> StepBatchSampler:
        """The step-indexed batch sampler of this process (rank and world size from the trainer); ``seeded``
        pairs each index with its crops' seed."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            if int(trainer.world_size) != self.world_size:
                raise ConfigError(
                    f"the run was planned for {self.world_size} process(es) but the trainer has "
                    f"{trainer.world_size}; set trainer.devices to the number of processes."
                )
            self.rank = int(trainer.global_rank)
        return StepBatchSampler(
            self.info.train_size,
            self.settings.batch_size,
            self.settings.seed,
            self._global_step,
            self.rank,
            self.world_size,
            self.settings.accumulate,
            seeded,
        )

    def use_loader_crops(self, specs: list[CropSpec]) -> bool:
        """Cut the training views' crops from the full image in the loader (datasets with ``loader_crops``,
        e.g. ``imagenet``); True when taken up. The views then see the crops (``ViewAugment.crop_plan``)."""
        if not getattr(self.train_set, "loader_crops", False):
            return False
        how = str(getattr(self.train_set, "interpolation", "bilinear"))
        self.crop_specs = [replace(s, interpolation=how) for s in specs]
        return True

    def _loader_kwargs(self) -> dict[str, Any]:
        s = self.settings
        return {
            "num_workers": s.num_workers,
            "pin_memory": s.pin_memory,
            "persistent_workers": s.persistent_workers and s.num_workers > 0,
            "prefetch_factor": s.prefetch_factor if s.num_workers > 0 else None,
        }

    def _crop_loader(self) -> DataLoader:
        """Batches ([uint8 [B, C, s, s] per crop], labels) or, decoding on the GPU, (EncodedBatch, labels)."""
        trainer = getattr(self, "trainer", None)
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        ds: Any = self.train_set
        self.decoder = choose_decoder(str(getattr(ds, "decode", "pil")), device)
        rows = self.pool_index.tolist()
        if self.decoder.name == "pil":
            crops = CropSamples(ds.samples, rows, self.crop_specs, ds.resize, ds.channels)
            return DataLoader(crops, batch_sampler=self.sampler(seeded=True), **self._loader_kwargs())
        encoded = EncodedSamples(ds.samples, rows, self.crop_specs, ds.resize)
        return DataLoader(
            encoded,
            batch_sampler=self.sampler(seeded=True),
            collate_fn=collate_encoded,
            **self._loader_kwargs(),
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Decode an encoded batch on the device it was moved to (GPU decoding); other batches pass."""
        if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], EncodedBatch):
            labels = batch[1]
            crops = decode_crops(batch[0], self.crop_specs, self.decoder, labels.device, self.info.channels)
            return crops, labels
        return batch

    def train_dataloader(self) -> DataLoader:
        """Batches of (uint8 images [B, C, H, W], labels [B]) in step order; with loader crops a list of
        uint8 [B, C, s, s] (one per view) in place of the images."""
        if self.crop_specs and not self.in_memory:
            return self._crop_loader()
        sampler, s = self.sampler(), self.settings
        if self.in_memory:  # one gather per batch in this process: no workers to keep or prefetch
            return DataLoader(
                _BatchGather(self.pool_images, self.pool_labels),
                sampler=sampler,
                batch_size=None,
                num_workers=0,
                pin_memory=s.pin_memory,
            )
        pool = torch.utils.data.Subset(self.train_set, self.pool_index.tolist())
        return DataLoader(pool, batch_sampler=sampler, **self._loader_kwargs())

    def probe_batch(self) -> tuple[Tensor, Tensor]:
        """The fixed held-out probe images and labels (empty when the monitor is off)."""
        return _as_tensors(self.train_set, self.probe_index)

    def eval_indices(self) -> tuple[Tensor, Tensor]:
        """Rows of the train and test sets used for kNN / linear probe, capped by eval.max_*.

        A cap keeps a seeded random subset (in file order), never the first rows: image folders and
        some datasets are stored class by class.
        """
        seed, s = int(self.settings.seed), self.settings
        tr = _random_rows(self.eval_index, s.eval_max_train, seed + 202)
        te = _random_rows(torch.arange(len(self.test_set)), s.eval_max_test, seed + 303)
        return tr, te

    def eval_loader(self, train: bool, shard: bool = False) -> DataLoader:
        """Batches (uint8 images, labels) of the train or test evaluation rows, in order (streamed);
        ``shard``: this process's rows only, positions rank, rank + W, ... (every row once over W)."""
        tr, te = self.eval_indices()
        dataset, rows = (self.train_set, tr) if train else (self.test_set, te)
        key = (train, rank(), world_size()) if shard else (train, 0, 1)  # which rows the loader holds
        if shard:
            rows = rows[rank() :: world_size()]
        bs = self.settings.eval_batch_size
        if hasattr(dataset, "images"):
            chunks = [rows[i : i + bs].tolist() for i in range(0, rows.numel(), bs)]
            return DataLoader(_BatchGather(dataset.images, dataset.labels), sampler=chunks, batch_size=None)
        if key in self._eval_loaders:  # persistent workers live on between evaluations / probe epochs
            return self._eval_loaders[key]
        subset = torch.utils.data.Subset(dataset, rows.tolist())
        loader = DataLoader(subset, batch_size=bs, shuffle=False, **self._loader_kwargs())
        if self.settings.persistent_workers and self.settings.num_workers > 0:
            self._eval_loaders[key] = loader
        return loader

    def probe_crop_loader(self, shard: bool = False) -> DataLoader | None:
        """The training rows of ``eval_loader(train=True, shard)`` in the same order, as ([uint8 [B, C, S, S]
        random-resized crop of the full image], labels) with new crops on every pass (the SGD probe's
        augmented epochs); None for datasets without loader crops (the probe then crops on the device)."""
        if not getattr(self.train_set, "loader_crops", False) or not self.crop_specs:
            return None
        tr, _ = self.eval_indices()
        rows = tr[rank() :: world_size()] if shard else tr
        spec = CropSpec(self.crop_specs[0].size, (0.08, 1.0), (3 / 4, 4 / 3))  # DirectCLR's linear_probe.py
        ds: Any = self.train_set
        crops = CropSamples(ds.samples, rows.tolist(), [spec], ds.resize, ds.channels)
        passes = EpochBatches(len(crops), self.settings.eval_batch_size, self.settings.seed, rank())
        return DataLoader(crops, batch_sampler=passes, **self._loader_kwargs())

    def eval_sets(self) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """((train images, labels), (test images, labels)) as whole tensors (small in-memory datasets)."""
        tr, te = self.eval_indices()
        return _as_tensors(self.train_set, tr), _as_tensors(self.test_set, te)
