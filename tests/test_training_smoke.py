"""A few training steps per objective and per projector variant on tiny synthetic images (fast)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dimcollapse.training.checkpoint import load_checkpoint
from dimcollapse.training.config import load_config, to_dict
from dimcollapse.training.model import SSLModel
from dimcollapse.training.parts import module_from_record
from dimcollapse.training.run import train
from lightning_helpers import quiet_trainer

TINY = [
    "data.name=synthetic",
    "data.kwargs={n: 128, image_size: 8, channels: 1, num_classes: 4}",
    "data.batch_size=16",
    "model.backbone_kwargs={widths: [4, 8], blocks: [1, 1]}",
    "model.projector_kwargs={hidden_dim: 16, out_dim: 8}",
    "optim.max_steps=3",
    "optim.warmup_epochs=0",
    "monitor.every_n_steps=3",
    "monitor.probe_size=16",
    "monitor.lid_k=4",
    "trainer.progress_bar=false",
    "trainer.tensorboard=false",
    "trainer.checkpoint_every=3",
    "eval.linear_probe_epochs=5",
    "eval.knn_k=[5]",
]


def tiny(*extra: str) -> Any:
    """The tiny synthetic config with ``extra`` overrides."""
    return load_config(None, [*TINY, *extra])


def _check_metrics(m: dict[str, Any]) -> None:
    for key in ("knn_k5_top1", "knn_k5_top5", "linear_top1", "linear_top5"):
        assert 0.0 <= m[key] <= 1.0
    assert m["steps"] == 3
    assert 1.0 <= m["erank_r"] <= m["d_r"] + 1e-9
    assert np.isfinite(m["rankme_z"]) and m["images_per_s"] > 0 and m["train_time_s"] > 0


OBJECTIVES = [
    ("simclr", []),
    ("directclr", ["objective.kwargs={d0: 4}", "model.projector=none", "model.projector_kwargs={}"]),
    ("byol", ["objective.kwargs={hidden_dim: 16}", "data.views.recipe=byol"]),
    ("simsiam", ["objective.kwargs={hidden_dim: 16}"]),
    ("barlow_twins", []),
    ("vicreg", []),
]


@pytest.mark.parametrize(("name", "extra"), OBJECTIVES, ids=[o[0] for o in OBJECTIVES])
def test_few_steps_per_objective(tmp_path: Path, name: str, extra: list[str]) -> None:
    cfg = tiny(f"objective.name={name}", *extra)
    m = train(cfg, tmp_path)
    _check_metrics(m)
    assert json.loads((tmp_path / "metrics.json").read_text())["knn_k5_top1"] == pytest.approx(
        m["knn_k5_top1"]
    )
    for f in ("config.yaml", "monitor.json", "checkpoints/last.ckpt", "checkpoints/final.ckpt"):
        assert (tmp_path / f).is_file(), f
    if name == "directclr":  # also evaluated on the sub-vector r[:, :d0]
        assert m["d0"] == 4 and 0.0 <= m["knn_k5_top1_d0"] <= 1.0 and "linear_top1_d0" in m
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "final.ckpt")
    assert ckpt["global_step"] == 3
    has_target = any(k.startswith("model.momentum_target.") for k in ckpt["state_dict"])
    assert has_target == (name == "byol")


PROJECTORS = [
    ("none", "{}"),
    ("linear", "{out_dim: 8}"),
    ("mlp", "{hidden_dim: 16, out_dim: 8}"),
    ("orthogonal", "{}"),
    ("diagonal", "{}"),
    ("fixed_lowrank", "{d0: 3}"),
    ("fixed_lowrank_diagonal", "{d0: 3}"),
    ("random_subvector", "{d0: 3}"),
    ("constant_subvector", "{d0: 3}"),
]


@pytest.mark.parametrize(("name", "kwargs"), PROJECTORS, ids=[p[0] for p in PROJECTORS])
def test_training_steps_per_projector_variant(name: str, kwargs: str) -> None:
    """Three optimizer steps through the LightningModule: backbone and trainable projector weights move,
    fixed projectors keep their buffers, z has the projector's size."""

    from dimcollapse.training.datamodule import DataSettings, SSLDataModule

    cfg = tiny(f"model.projector={name}", f"model.projector_kwargs={kwargs}", "monitor.enabled=false",
               "eval.online_probe=false")  # fmt: skip
    dm = SSLDataModule(DataSettings.from_config(cfg))
    dm.setup()
    module = module_from_record(to_dict(cfg), dm.info.__dict__)
    before = {k: v.clone() for k, v in module.model.state_dict().items() if isinstance(v, torch.Tensor)}
    trainer = quiet_trainer(3)
    trainer.fit(module, datamodule=dm)
    after = module.model.state_dict()
    assert not torch.equal(before["backbone.conv1.weight"], after["backbone.conv1.weight"])
    trainable = [n for n, p in module.model.projector.named_parameters() if p.requires_grad]
    for n in trainable:
        assert not torch.equal(before[f"projector.{n}"], after[f"projector.{n}"]), n
    for n, b in module.model.projector.named_buffers():
        if f"projector.{n}" in before and not any(w in n for w in ("mask", "running_", "num_batches")):
            assert torch.equal(before[f"projector.{n}"], b), n
    module.eval()
    with torch.no_grad():
        r, z = module.encode_eval(dm.pool_images[:5])
    assert r.shape == (5, module.model.backbone.out_dim)
    assert z.shape == (5, module.model.projector.out_dim)


def test_ema_target_update_formula() -> None:
    cfg = tiny("objective.name=byol", "objective.kwargs={hidden_dim: 16}")
    model = SSLModel.from_config(cfg.model, cfg.objective, in_channels=1, image_size=8)
    assert model.momentum_target is not None
    assert all(not p.requires_grad for p in model.momentum_target.parameters())
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    t0 = [p.clone() for p in model.momentum_target["backbone"].parameters()]
    model.update_target(0.9)
    targets = list(model.momentum_target["backbone"].parameters())
    for t_old, t_new, o in zip(t0, targets, model.backbone.parameters(), strict=True):
        torch.testing.assert_close(t_new, 0.9 * t_old + 0.1 * o)


def test_regularizer_terms_logged_each_step_with_share(tmp_path: Path) -> None:
    regs = "regularizers=[{name: so, kwargs: {weight: 0.01}}, {name: ldreg, kwargs: {weight: 0.01, k: 4}}]"
    cfg = tiny(regs, "trainer.log_every=1", "monitor.every_n_steps=1")
    train(cfg, tmp_path)
    rows = list(csv.DictReader((tmp_path / "logs" / "version_0" / "metrics.csv").open()))
    rows = [r for r in rows if r.get("train/loss")]
    assert len(rows) == 3
    for r in rows:
        loss, so, ld = float(r["train/loss"]), float(r["train/reg/so"]), float(r["train/reg/ldreg"])
        assert float(r["train/ssl_loss"]) + so + ld == pytest.approx(loss, rel=1e-5)
        assert float(r["train/reg/so_share"]) == pytest.approx(so / abs(loss), rel=1e-5)
    history = json.loads((tmp_path / "monitor.json").read_text())["history"]
    assert [h["step"] for h in history] == [1, 2, 3]
    assert set(history[-1]["regularizers"]) == {"so", "ldreg"}
    layers = history[-1]["layers"]
    assert layers["backbone.conv1"]["regularized_by"] == ["so"]  # SO acts on every backbone layer
    assert layers["projector.net.0"]["regularized_by"] == []  # not on the projector by default
    w = load_checkpoint(tmp_path / "checkpoints" / "final.ckpt")["state_dict"][
        "model.backbone.layer2.0.conv1.weight"
    ]
    mat = w.double().reshape(w.shape[0], -1).numpy()  # 8 x 36: the smaller Gram is W W^T
    expected = float(np.sum((mat @ mat.T - np.eye(mat.shape[0])) ** 2))
    assert layers["backbone.layer2.0.conv1"]["orth_dev"] == pytest.approx(expected, rel=1e-4)
    assert history[-1]["regularizers"]["so"]["value"] == pytest.approx(so, rel=1e-5)


def test_monitor_history_matches_independent_erank(tmp_path: Path) -> None:
    cfg = tiny("monitor.every_n_steps=1")
    train(cfg, tmp_path)
    mon = json.loads((tmp_path / "monitor.json").read_text())
    assert [h["step"] for h in mon["history"]] == [1, 2, 3]
    last = mon["history"][-1]
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "final.ckpt")
    module = module_from_record(ckpt["hyper_parameters"]["config"], ckpt["hyper_parameters"]["data_info"])
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    from dimcollapse.training.datamodule import DataSettings, SSLDataModule

    dm = SSLDataModule(DataSettings.from_config(cfg))
    dm.setup()
    with torch.no_grad():
        r, _ = module.encode_eval(dm.probe_batch()[0])
    eig = np.clip(np.linalg.eigvalsh(np.cov(r.double().numpy().T, bias=True)), 0, None)
    p = eig[eig > 0] / eig.sum()
    assert last["erank_r"] == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-6)
    assert len(last["spectrum_r"]) == r.shape[1]
    assert "backbone.conv1" in last["layers"] and last["layers"]["backbone.conv1"]["erank"] >= 1.0
    assert mon["time_s"] > 0 and mon["probe_size"] == 16


class _LazyImages(torch.utils.data.Dataset):
    """A dataset without `.images` (like image folders): items are made on access."""

    def __init__(self, n: int, train: bool) -> None:
        from dimcollapse.data.synthetic import synthetic

        self.inner = synthetic(n=n, image_size=8, num_classes=4, train=train)
        self.num_classes, self.name = 4, "lazy"

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.inner.images[i], int(self.inner.labels[i])


def test_lazy_dataset_trains_and_streams_evaluation(tmp_path: Path) -> None:
    from dimcollapse.registry import names, register

    if "lazy_test_images" not in names("dataset"):
        register("dataset", "lazy_test_images")(lambda root=None, train=True, n=96: _LazyImages(n, train))
    m = train(tiny("data.name=lazy_test_images", "data.kwargs={n: 96}", "eval.batch_size=10"), tmp_path)
    assert m["eval_train_size"] == 96 and m["eval_test_size"] == 96 and m["steps"] == 3
    eager = train(tiny("data.kwargs={n: 96, image_size: 8, channels: 1, num_classes: 4}"), tmp_path / "eager")
    for key in ("knn_k5_top1", "erank_r"):  # same images, same steps -> same numbers as the in-memory path
        assert m[key] == pytest.approx(eager[key], rel=1e-6), key
