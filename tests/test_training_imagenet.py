"""A run on ImageNet as distributed: the loader cuts each view's crop from the full image (same crops with
0 or 2 workers, pinned persistent workers), the GPU-decode path cuts the same boxes, and `train` finishes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dimcollapse.cli.main import run
from dimcollapse.data.decode import Decoder
from dimcollapse.data.loader_crops import CropSamples, EncodedSamples, collate_encoded, decode_crops
from dimcollapse.training.config import load_config
from dimcollapse.training.plan import plan_run
from imagenet_helpers import write_imagenet

TINY = [
    "data.name=imagenet",
    "data.kwargs={image_size: 16, resize: 18}",
    "data.batch_size=4",
    "data.views={recipe: byol, n_views: 2}",
    "model.backbone_kwargs={widths: [4, 8], blocks: [1, 1]}",
    "model.projector_kwargs={hidden_dim: 16, out_dim: 8}",
    "optim.name=sgd",
    "optim.lr=0.05",
    "optim.max_steps=2",
    "optim.warmup_epochs=0",
    "monitor.enabled=false",
    "eval.online_probe=false",
    "eval.knn_k=[3]",
    "eval.lid_k=3",
    "eval.linear_probe_epochs=3",
    "trainer.progress_bar=false",
    "trainer.tensorboard=false",
]


@pytest.fixture()
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DIMCOLLAPSE_DATA", raising=False)
    write_imagenet(tmp_path / "imagenet", per_class=4, size=(40, 30))
    return tmp_path / "imagenet"


def batches(
    root: Path, workers: int, shards: Path | None = None
) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
    extra = [f"data.num_workers={workers}", "data.persistent_workers=true"] if workers else []
    where = [f"data.kwargs.shards={shards}"] if shards else [f"data.root={root}"]
    plan = plan_run(load_config(None, [*TINY, *where, *extra]))
    dm = plan.datamodule
    assert dm.crop_specs and [s.size for s in dm.crop_specs] == [16, 16]
    assert dm.crop_specs[0].scale == (0.08, 1.0) and dm.crop_specs[0].ratio == (3 / 4, 4 / 3)
    loader = dm.train_dataloader()
    assert loader.persistent_workers == bool(workers)
    return list(loader)


def test_loader_crops_do_not_depend_on_workers(tree: Path) -> None:
    none, two = batches(tree, 0), batches(tree, 2)
    assert len(none) == len(two) == 3  # 12 images, batch 4, one process: 3 steps per epoch
    for (xa, ya), (xb, yb) in zip(none, two, strict=True):
        assert isinstance(xa, list) and len(xa) == 2 and tuple(xa[0].shape) == (4, 3, 16, 16)
        assert torch.equal(ya, yb) and all(torch.equal(a, b) for a, b in zip(xa, xb, strict=True))
    assert not torch.equal(none[0][0][0], none[0][0][1])  # the two views are different crops


def test_training_from_shards_sees_the_same_crops_as_from_the_tree(tree: Path) -> None:
    out = tree.parent / "shards"
    assert run(["data", "shards", "--src", str(tree), "--out", str(out), "--per-shard", "5"]) == 0
    for (xa, ya), (xb, yb) in zip(batches(tree, 0), batches(tree, 0, out), strict=True):
        assert torch.equal(ya, yb) and all(torch.equal(a, b) for a, b in zip(xa, xb, strict=True))


def test_gpu_decode_path_cuts_the_same_boxes(tree: Path) -> None:
    plan = plan_run(load_config(None, [*TINY, f"data.root={tree}", "data.kwargs.interpolation=bicubic"]))
    ds, specs = plan.datamodule.train_set, plan.datamodule.crop_specs
    assert [s.interpolation for s in specs] == ["bicubic", "bicubic"]  # DirectCLR's crops
    rows, items = [0, 5, 9], [(0, 11), (1, 12), (2, 13)]
    cpu = [CropSamples(ds.samples, rows, specs, ds.resize)[it] for it in items]
    enc = EncodedSamples(ds.samples, rows, specs, ds.resize)
    batch, labels = collate_encoded([enc[it] for it in items])
    assert labels.tolist() == [c[1] for c in cpu]
    views = decode_crops(batch, specs, Decoder("pil", "test"), torch.device("cpu"))
    for v in range(2):
        want = torch.stack([c[0][v] for c in cpu]).float()
        assert tuple(views[v].shape) == (3, 3, 16, 16)
        assert (views[v].float() - want).abs().mean() < 3.0  # same box; PIL vs torch antialiased resize


def test_train_on_imagenet_layout(tree: Path) -> None:
    out = tree.parent / "run"
    args = [f"data.root={tree}", "data.num_workers=1", "data.persistent_workers=true", "data.pin_memory=true"]
    recipe = tree.parent / "tiny.yaml"
    recipe.write_text("name: tiny\n")
    assert run(["train", str(recipe), *TINY, *args, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and 0.0 <= metrics["knn_k3_top1"] <= 1.0


def test_sgd_probe_crops_come_from_the_full_image_anew_each_epoch(tree: Path) -> None:
    plan = plan_run(load_config(None, [*TINY, f"data.root={tree}"]))
    dm = plan.datamodule
    loader = dm.probe_crop_loader()
    assert loader is not None
    first, second = list(loader), list(loader)
    _, want = zip(*dm.eval_loader(train=True), strict=True)
    assert torch.equal(torch.cat([y for _, y in first]), torch.cat(want))  # the evaluation rows, in order
    assert all(isinstance(x, list) and tuple(x[0].shape[1:]) == (3, 16, 16) for x, _ in first)
    assert not torch.equal(first[0][0][0], second[0][0][0])  # a new random crop every epoch


def test_train_with_the_papers_sgd_probe_on_imagenet_layout(tree: Path) -> None:
    recipe = tree.parent / "tiny.yaml"
    recipe.write_text("name: tiny\n")
    probe = ["eval.linear_probe_kind=sgd", "eval.sgd_probe_batch_size=4", "eval.sgd_probe_augment=true"]
    out = tree.parent / "run_sgd"
    assert run(["train", str(recipe), *TINY, f"data.root={tree}", *probe, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["linear_sgd_top1"] <= 1.0
