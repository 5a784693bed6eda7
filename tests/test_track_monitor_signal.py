"""The monitor's collapse signal on the two real cases: a healthy SimCLR run is never stopped (the
baseline starts after a warm-up), an MSE run whose total variance falls is flagged (the scale signals),
and the pieces it is made of, checked against independent computations."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dimcollapse import CollapseMonitor, Tracker
from dimcollapse.errors import ConfigError
from dimcollapse.track.rule import CollapseRule, default_warmup
from dimcollapse.track.signals import normalized_std, total_variance
from dimcollapse.track.verdict import collapse_verdict


def _digits() -> torch.Tensor:
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().data, dtype=torch.float32) / 16.0
    return x - x.mean(0)


def _noisy(x: torch.Tensor) -> torch.Tensor:
    keep = (torch.rand_like(x) > 0.25).float()  # random pixel masking + noise: two views of a digit
    return x * keep + 0.1 * torch.randn_like(x)


class SimCLRStyle(L.LightningModule):
    """A lightly-style SimCLR on digits: backbone + projection head, the NT-Xent loss."""

    def __init__(self, loss: str = "ntxent", lr: float = 0.05) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.projection_head = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32))
        self.loss, self.lr = loss, lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head(self.backbone(x))

    def training_step(self, batch: Any, idx: int) -> torch.Tensor:
        (x,) = batch
        z1, z2 = self(_noisy(x)), self(_noisy(x))
        if self.loss == "mse":  # pulls the views together and nothing keeps them apart
            return (z1 - z2).pow(2).sum(1).mean()
        z = F.normalize(torch.cat([z1, z2]), dim=1)
        sim = z @ z.T / 0.2
        sim.fill_diagonal_(-math.inf)
        n = x.shape[0]
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
        return F.cross_entropy(sim, target)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def _fit(tmp_path: Path, module: L.LightningModule, monitor: CollapseMonitor, steps: int) -> L.Trainer:
    torch.manual_seed(0)
    x = _digits()
    data = DataLoader(TensorDataset(x[256:]), batch_size=128, shuffle=True, drop_last=True)
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        callbacks=[monitor],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, data)
    return trainer


def _readme_monitor(**kw: Any) -> CollapseMonitor:
    """The README's monitor settings (embed r and z, projection head layers, stop_on_collapse)."""
    options: dict[str, Any] = {"stop_on_collapse": True, **kw}
    return CollapseMonitor(
        probe=_digits()[:256],
        embed=lambda m, x: {"r": m.backbone(x), "z": m.projection_head(m.backbone(x))},
        layers=["projection_head*"],
        every_n_steps=10,
        **options,
    )


def test_a_healthy_simclr_run_is_never_stopped(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = SimCLRStyle()
    monitor = _readme_monitor()
    trainer = _fit(tmp_path, module, monitor, 300)
    mon = json.loads((tmp_path / "monitor.json").read_text())
    assert trainer.global_step == 300 and mon["stopped_at"] is None and mon["warnings"] == 0
    first, last = mon["history"][0], mon["history"][-1]
    # the run is healthy: its spread grows towards the ideal 1/sqrt(d) while the random-init erank falls
    assert last["std_norm_z"] > first["std_norm_z"]
    assert mon["warmup_steps"] == default_warmup(10, 300) == 100
    assert monitor.verdict().startswith("collapsing: no (step 300: erank_r")
    assert mon["verdict"] == monitor.verdict()


def test_an_mse_run_whose_variance_falls_is_flagged(tmp_path: Path) -> None:
    torch.manual_seed(0)
    monitor = _readme_monitor(stop_on_collapse=False, watch="erank_z")
    _fit(tmp_path, SimCLRStyle(loss="mse", lr=0.3), monitor, 400)
    mon = json.loads((tmp_path / "monitor.json").read_text())
    first, last = mon["history"][0], mon["history"][-1]
    assert last["total_var_z"] < first["total_var_z"] / 50  # the case: total variance falls 50x
    warned = [h for h in mon["history"] if h["warning"]]
    assert warned and warned[-1] is last and mon["warnings"] == len(warned)
    assert any("std_norm_z" in r or "total_var_z" in r for r in warned[0]["warning_reasons"])
    assert mon["verdict"].startswith("collapsing: yes (step 400: ")


def test_an_mse_run_is_stopped_with_stop_on_collapse(tmp_path: Path) -> None:
    torch.manual_seed(0)
    monitor = _readme_monitor(patience=2)
    trainer = _fit(tmp_path, SimCLRStyle(loss="mse", lr=0.3), monitor, 400)
    mon = json.loads((tmp_path / "monitor.json").read_text())
    warned = [h["step"] for h in mon["history"] if h["warning"]]
    assert mon["stopped_at"] == warned[1] and trainer.global_step == warned[1] < 400
    assert mon["verdict"].startswith(f"collapsing: yes (stopped at step {mon['stopped_at']}: std_norm_r")


def test_scale_signals_against_numpy() -> None:
    z = torch.randn(200, 12, dtype=torch.float64) * torch.linspace(0.1, 3, 12) + 2.0
    u = z.numpy() / np.linalg.norm(z.numpy(), axis=1, keepdims=True)
    assert normalized_std(z) == pytest.approx(float(u.std(axis=0).mean()), rel=1e-12)
    eig = np.linalg.eigvalsh(np.cov(z.numpy().T, bias=True))
    assert total_variance(eig) == pytest.approx(float(z.numpy().var(axis=0).sum()), rel=1e-10)
    # a point cloud shrinking onto one point: shape unchanged, both scale signals -> 0
    shrunk = 2.0 + 1e-3 * (z - 2.0)
    assert normalized_std(shrunk) < 0.01 * normalized_std(z)
    eig_shrunk = np.linalg.eigvalsh(np.cov(shrunk.numpy().T, bias=True))
    assert total_variance(eig_shrunk) == pytest.approx(1e-6 * total_variance(eig), rel=1e-6)


def test_rule_shape_waits_for_the_warm_up_scale_does_not() -> None:
    rule = CollapseRule(warn_fraction=0.5, variance_fraction=0.1, warmup_steps=20)

    def check(step: int, erank: float, std: float, var: float) -> list[str]:
        rec = {"step": step, "erank_r": erank, "std_norm_r": std, "total_var_r": var}
        return rule.check(rec, "erank_r", "r")

    assert check(1, 50.0, 0.1, 100.0) == [] and "erank_r" not in rule.best  # random init: no erank baseline
    assert check(10, 5.0, 0.1, 100.0) == []  # the erank falls inside the warm-up: no warning
    assert check(20, 10.0, 0.1, 100.0) == [] and rule.best["erank_r"] == 10.0
    assert check(30, 6.0, 0.06, 11.0) == []
    assert check(40, 4.0, 0.09, 12.0) == ["erank_r 4 < 0.5 x its best 10 (step 20)"]
    assert check(50, 9.0, 0.04, 9.0) == [
        "std_norm_r 0.04 < 0.5 x its best 0.1 (step 1)",
        "total_var_r 9 < 0.1 x its best 100 (step 1)",
    ]
    assert check(60, float("nan"), 0.1, 50.0) == ["erank_r is nan"]
    early = CollapseRule(warmup_steps=100)
    rec = {"step": 10, "erank_r": 30.0, "std_norm_r": 0.1, "total_var_r": 1.0}
    assert early.check(rec, "erank_r", "r") == []
    rec = {"step": 20, "erank_r": 30.0, "std_norm_r": 0.1, "total_var_r": 0.05}
    assert early.check(rec, "erank_r", "r") == ["total_var_r 0.05 < 0.1 x its best 1 (step 10)"]
    with pytest.raises(ConfigError, match="variance_fraction"):
        CollapseRule(variance_fraction=2.0)
    with pytest.raises(ConfigError, match="warmup_steps"):
        CollapseRule(warmup_steps=-1)


def test_two_named_monitors_in_one_trainer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    embed = lambda m, x: {"r": m.backbone(x)}  # noqa: E731
    a = CollapseMonitor(_digits()[:100], embed=embed, every_n_steps=5, name="backbone")
    b = CollapseMonitor(_digits()[:100], every_n_steps=5, name="head", layers=["projection_head.*"])
    torch.manual_seed(0)
    x = _digits()
    data = DataLoader(TensorDataset(x[256:]), batch_size=64)
    trainer = L.Trainer(
        max_steps=10,
        logger=False,
        callbacks=[a, b],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with caplog.at_level(logging.INFO, logger="dimcollapse.monitor"):
        trainer.fit(SimCLRStyle(), data)
    ra = json.loads((tmp_path / "monitor-backbone.json").read_text())
    rb = json.loads((tmp_path / "monitor-head.json").read_text())
    logged = [r.getMessage() for r in caplog.records]  # each monitor's summary verdict, logged at the end
    assert f"backbone: {ra['verdict']}" in logged and f"head: {rb['verdict']}" in logged
    assert "erank_r" in ra["history"][-1] and "erank_z" in rb["history"][-1]
    assert set(rb["history"][-1]["layers"]) == {"projection_head.0", "projection_head.2"}
    ckpt = tmp_path / "two.ckpt"
    trainer.save_checkpoint(ckpt)
    states = torch.load(ckpt, weights_only=False)["callbacks"]
    assert {a.state_key, b.state_key} <= set(states) and a.state_key != b.state_key
    with pytest.raises(ConfigError, match="name"):
        CollapseMonitor(_digits()[:10], name="a b")


def test_a_probe_with_n_at_most_d_rows_warns(caplog: pytest.LogCaptureFixture) -> None:
    model = nn.Linear(64, 64)
    tracker = Tracker(model, _digits()[:40], every=1, lid_k=5)
    with caplog.at_level(logging.WARNING, logger="dimcollapse.monitor"):
        tracker.step(1)
        tracker.step(2)
    notes = [r.getMessage() for r in caplog.records if "rows <= 64" in r.getMessage()]
    assert len(notes) == 1 and "bounded by N - 1 = 39" in notes[0]
    assert "caution: the probe has 40 rows <= 64 dims" in tracker.verdict()


def test_verdict_of_an_older_monitor_json_without_scale_signals() -> None:
    old = {"watch": "erank_r", "stopped_at": None, "history": [{"step": 1, "warning": True}]}
    assert collapse_verdict(old) == "collapsing: yes (step 1: erank_r fell)"
    assert collapse_verdict({"history": []}).startswith("collapsing: unknown")


def test_default_layers_leave_out_momentum_copies() -> None:
    class BYOLStyle(
        nn.Module
    ):  # lightly's BYOL names its copies backbone_momentum / projection_head_momentum
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Linear(8, 8)
            self.projection_head = nn.Linear(8, 4)
            self.backbone_momentum = nn.Linear(8, 8)
            self.projection_head_momentum = nn.Linear(8, 4)
            self.teacher = nn.ModuleDict({"head": nn.Linear(4, 4)})

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.projection_head(self.backbone(x))

    tracker = Tracker(BYOLStyle(), torch.randn(30, 8), every=1, lid_k=5)
    assert set(tracker.measure_now(1)["layers"]) == {"backbone", "projection_head"}  # type: ignore[index]
    named = Tracker(BYOLStyle(), torch.randn(30, 8), every=1, lid_k=5, layers=["*momentum"])
    assert set(named.measure_now(1)["layers"]) == {"backbone_momentum", "projection_head_momentum"}  # type: ignore[index]
