"""CollapseMonitor and Tracker on models dimcollapse did not define (Sequential, lightly-style,
solo-learn-style, a Hugging Face ViT), checked against independent numpy computations."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dimcollapse import CollapseMonitor, Tracker
from dimcollapse.errors import ConfigError


def np_erank(z: torch.Tensor) -> float:
    eig = np.clip(np.linalg.eigvalsh(np.cov(z.double().numpy().T, bias=True)), 0, None)
    p = eig[eig > 0] / eig.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def test_tracker_in_a_plain_loop_on_a_sequential(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 8))
    probe = torch.randn(64, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tracker = Tracker(model, probe, every=3, out_path=tmp_path / "monitor.json", lid_k=5)
    for step in range(1, 8):
        loss = model(torch.randn(32, 10)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        tracker.step(step)
    tracker.close()
    mon = json.loads((tmp_path / "monitor.json").read_text())
    assert [h["step"] for h in mon["history"]] == [1, 3, 6, 7]
    last = mon["history"][-1]
    with torch.no_grad():
        assert last["erank_z"] == pytest.approx(np_erank(model(probe)), rel=1e-9)
    sv = np.linalg.svd(model[2].weight.detach().double().numpy(), compute_uv=False)
    assert set(last["layers"]) == {"0", "2"}
    assert last["layers"]["2"]["sigma_max"] == pytest.approx(sv[0], rel=1e-9)
    assert last["layers"]["2"]["orth_dev"] == pytest.approx(float(((sv**2 - 1) ** 2).sum()), rel=1e-9)
    assert mon["probe_size"] == 64 and mon["watch"] == "erank_z"


class LightlyStyle(L.LightningModule):
    """backbone + projection_head, as lightly's examples build a SimCLR model."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.ReLU())
        self.projection_head = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head(self.backbone(x))

    def training_step(self, batch: Any, idx: int) -> torch.Tensor:
        (x,) = batch
        z1, z2 = self(x + 0.1 * torch.randn_like(x)), self(x + 0.1 * torch.randn_like(x))
        return (z1 - z2).pow(2).mean() - 0.01 * z1.std(0).mean()

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _trainer(tmp_path: Path, cb: L.Callback, steps: int) -> L.Trainer:
    from lightning.pytorch.loggers import CSVLogger

    return L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(tmp_path, name="logs"),
        callbacks=[cb],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        log_every_n_steps=1,
    )


def test_monitor_on_a_lightly_style_module_with_a_dataloader_probe(tmp_path: Path) -> None:
    probe = DataLoader(TensorDataset(torch.randn(40, 3, 4, 4), torch.zeros(40)), batch_size=16)
    module = LightlyStyle()
    embed = lambda m, x: {"r": m.backbone(x), "z": m(x)}  # noqa: E731
    monitor = CollapseMonitor(probe, embed=embed, layers=["projection_head.*"], every_n_steps=2, lid_k=5)
    data = DataLoader(TensorDataset(torch.randn(64, 3, 4, 4)), batch_size=16)
    _trainer(tmp_path, monitor, 5).fit(module, data)
    mon = json.loads((tmp_path / "monitor.json").read_text())
    assert [h["step"] for h in mon["history"]] == [1, 2, 4, 5]
    last = mon["history"][-1]
    assert set(last["layers"]) == {"projection_head.0", "projection_head.2"}
    x = torch.cat([b[0] for b in probe])
    with torch.no_grad():
        assert last["erank_r"] == pytest.approx(np_erank(module.backbone(x)), rel=1e-9)
        assert last["rankme_z"] > 1 and last["epoch"] == pytest.approx(5 / 4)
    rows = list(csv.DictReader(next((tmp_path / "logs").rglob("metrics.csv")).open()))
    logged = [float(r["monitor/erank_r"]) for r in rows if r.get("monitor/erank_r")]
    assert logged == pytest.approx([h["erank_r"] for h in mon["history"]])


class SoloStyle(L.LightningModule):
    """solo-learn style: forward returns a dict with "feats" and "z"; the loss kills all but one direction."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(6, 6)
        self.projector = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(x)
        return {"feats": feats, "z": self.projector(feats), "logits": feats[:, :2, None]}  # 3-D: ignored

    def training_step(self, batch: Any, idx: int) -> torch.Tensor:
        z = self(batch[0])["z"]
        return z[:, 1:].pow(2).sum(1).mean()

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.3)


def test_stop_on_collapse_like_early_stopping(tmp_path: Path) -> None:
    torch.manual_seed(1)
    monitor = CollapseMonitor(
        torch.randn(50, 6),
        every_n_steps=1,
        watch="erank_z",
        stop_on_collapse=True,
        patience=2,
        warn_fraction=0.5,
        warmup_steps=0,  # this loss collapses from its first step: the erank baseline is step 1's
        lid_k=5,
    )
    data = DataLoader(TensorDataset(torch.randn(512, 6)), batch_size=32)
    trainer = _trainer(tmp_path, monitor, 200)
    trainer.fit(SoloStyle(), data)
    mon = json.loads((tmp_path / "monitor.json").read_text())
    warned = [h["step"] for h in mon["history"] if h["warning"]]
    assert mon["stopped_at"] == warned[1] and trainer.global_step < 200
    assert {"erank_feats", "erank_z"} <= set(mon["history"][0]) and "erank_logits" not in mon["history"][0]
    assert mon["history"][-1]["erank_z"] < 0.5 * mon["best_erank_z"]


def test_hugging_face_vit_from_a_config() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(
        image_size=16,
        patch_size=8,
        num_channels=3,
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
    )
    model = transformers.ViTModel(cfg)
    probe = torch.randn(20, 3, 16, 16)
    tracker = Tracker(
        model,
        probe,
        embed=lambda m, x: m(pixel_values=x).last_hidden_state[:, 0],
        layers=["*layer*.1.attention.*"],  # transformers 5: layers.1.attention.q_proj; 4: encoder.layer.1...
        every=1,
        lid_k=5,
    )
    rec = tracker.step(1)
    assert rec is not None
    with torch.no_grad():
        cls = model(pixel_values=probe).last_hidden_state[:, 0]
    assert rec["erank_z"] == pytest.approx(np_erank(cls), rel=1e-9)
    query = next(n for n in rec["layers"] if n.endswith(("q_proj", "query")))
    w = dict(model.named_modules())[query].weight.detach().double().numpy()
    assert rec["layers"][query]["sigma_max"] == pytest.approx(np.linalg.norm(w, 2), rel=1e-9)
    assert rec["layers"] and all(".1.attention." in name for name in rec["layers"])
    # default embed: the model output's 2-D entries (pooler_output) are the embeddings
    rec2 = Tracker(model, {"pixel_values": probe}, every=1, lid_k=5, weight_spectra=False).step(1)
    assert rec2 is not None and "erank_pooler_output" in rec2


def test_missing_pieces_are_one_line_errors_saying_what_to_pass() -> None:
    class NoForward(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Linear(3, 3)

    with pytest.raises(ConfigError, match=r"has no forward\(\).*embed=lambda m, x: m.backbone\(x\)"):
        Tracker(NoForward(), torch.randn(8, 3), every=1).step(1)
    with pytest.raises(ConfigError, match=r"no weight layer matches.*backbone"):
        Tracker(NoForward(), torch.randn(8, 3), embed=lambda m, x: m.backbone(x), layers=["head.*"]).step(1)
    with pytest.raises(ConfigError, match="a probe is needed"):
        CollapseMonitor(None)


def test_tracker_lidar_from_augmented_views_matches_direct_lidar() -> None:
    from dimcollapse.diagnostics.lidar import lidar

    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 4))
    probe = torch.randn(30, 5)
    noises = [0.2 * torch.randn(30, 5) for _ in range(3)]
    calls = {"i": 0}

    def augment(x: torch.Tensor) -> torch.Tensor:
        calls["i"] += 1
        return x + noises[(calls["i"] - 1) % 3]

    tracker = Tracker(model, probe, augment=augment, n_views=3, every=1, weight_spectra=False, lid_k=5)
    rec = tracker.step(1)
    assert rec is not None
    with torch.no_grad():
        views = torch.stack([model(probe + n) for n in noises], dim=1)
    assert rec["lidar_z"] == pytest.approx(lidar(views.double()), rel=1e-9)
