"""The run plan: SSLModule from hand-made components (no run config), and plan_run against that path."""

from __future__ import annotations

import copy
from typing import Any

import lightning as L
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from dimcollapse.data.views import ViewAugment
from dimcollapse.objectives.simclr import NTXent
from dimcollapse.registry import build
from dimcollapse.regularizers.koleo import KoLeo
from dimcollapse.training.config import OptimConfig, load_config
from dimcollapse.training.datamodule import DataSettings, SSLDataModule
from dimcollapse.training.module import ModuleSettings, SSLModule, step_seed
from dimcollapse.training.parts import module_from_record
from dimcollapse.training.plan import plan_run
from dimcollapse.training.schedules import plain_schedules
from lightning_helpers import quiet_trainer

TINY = [
    "data.name=synthetic",
    "data.kwargs={n: 96, image_size: 8, channels: 1, num_classes: 4}",
    "data.batch_size=16",
    "model.backbone_kwargs={widths: [4, 8], blocks: [1, 1]}",
    "model.projector_kwargs={hidden_dim: 16, out_dim: 8}",
    "optim.name=sgd",
    "optim.lr=0.05",
    "optim.max_steps=2",
    "optim.warmup_epochs=0",
    "regularizers=[{name: koleo, kwargs: {weight: 0.01}}]",
    "monitor.enabled=false",
    "eval.online_probe=false",
    "eval.knn_k=[5]",
]


class TinyNet(nn.Module):
    """A user's own backbone: conv -> ReLU -> global mean -> linear (no registry, no config)."""

    def __init__(self, out_dim: int = 6) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, out_dim)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class _AfterFirstStep(L.Callback):
    """Keeps a copy of the module's parameters after the first optimizer step."""

    def __init__(self) -> None:
        self.params: dict[str, Tensor] = {}

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, i: int) -> None:
        if not self.params:
            self.params = {n: p.detach().clone() for n, p in pl_module.named_parameters()}


def test_a_module_of_hand_made_parts_trains_and_its_first_step_is_plain_sgd_on_the_summed_loss() -> None:
    """No config: a custom backbone, a linear projector, SimCLR and KoLeo, views and plain settings.
    After step 1, w = w0 - lr * grad of SimCLR(z1, z2) + KoLeo([r1, r2]) on the views of step 0's seed."""
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(4)
    x = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 4, (32,), generator=gen)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
    backbone, projector = TinyNet(), nn.Linear(6, 5)
    objective, koleo = NTXent(temperature=0.5), KoLeo()
    views = ViewAugment("simclr", image_size=8, channels=1)
    lr, seed = 0.2, 11
    optim = OptimConfig(name="sgd", lr=lr, momentum=0.0, weight_decay=0.0, warmup_epochs=0.0, max_steps=2)
    settings = ModuleSettings(
        optim=optim, schedules=plain_schedules(optim, 2, [0.1]), batch_size=16, seed=seed
    )
    module = SSLModule(backbone, projector, objective, views, settings, [("koleo", koleo)])
    assert module.term_names == ["koleo"] and module.total_steps == 2

    ref_b, ref_p = copy.deepcopy(backbone), copy.deepcopy(projector)
    torch.manual_seed(step_seed(seed, 0, 0))
    v1, v2 = views(x[:16])
    r1, r2 = ref_b(v1), ref_b(v2)
    loss = NTXent(temperature=0.5)(ref_p(r1), ref_p(r2)) + 0.1 * KoLeo()([r1, r2], None)
    loss.backward()
    expected = {f"model.backbone.{n}": p.detach() - lr * p.grad for n, p in ref_b.named_parameters()}
    expected.update({f"model.projector.{n}": p.detach() - lr * p.grad for n, p in ref_p.named_parameters()})

    first = _AfterFirstStep()
    terms = _Terms()
    trainer = quiet_trainer(2, [first, terms])
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 2
    for name, want in expected.items():
        torch.testing.assert_close(first.params[name], want, rtol=1e-5, atol=1e-6, msg=name)
    moved = module.model.backbone.conv.weight.detach()
    assert not torch.equal(moved, first.params["model.backbone.conv.weight"])  # step 2 trained too
    assert torch.isfinite(moved).all()
    assert set(terms.seen) == {"koleo"} and terms.seen["koleo"]["coefficient"].item() == pytest.approx(0.1)
    assert module.hparams == {}  # no config anywhere: nothing stored for load_run


class _Terms(L.Callback):
    """Keeps the regularizer statistics a step returns in its outputs (what callbacks read)."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        self.seen = outputs["terms"]


def _fit_state(module: SSLModule, dm: SSLDataModule) -> dict[str, Tensor]:
    quiet_trainer(2).fit(module, datamodule=dm)
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_plan_run_and_the_same_parts_built_by_hand_train_to_identical_weights() -> None:
    """plan_run resolves the config into parts and settings; building those parts by hand (registry
    names, same seed, same order) and plain settings gives a module that trains to the same bits."""
    cfg = load_config(None, TINY)
    plan = plan_run(cfg)
    assert plan.data == DataSettings.from_config(cfg) and plan.data.probe_size == 0
    assert plan.parts.settings.total_steps == 2 and plan.parts.settings.optim.lr == 0.05
    assert plan.parts.record["config"]["optim"]["lr"] == 0.05
    planned = _fit_state(SSLModule.from_plan(plan), plan.datamodule)

    torch.manual_seed(cfg.trainer.seed)
    backbone = build("backbone", "small_resnet", widths=[4, 8], blocks=[1, 1], in_channels=1)
    projector = build("projector", "mlp", in_dim=backbone.out_dim, hidden_dim=16, out_dim=8)
    objective = build("objective", "simclr")
    views = ViewAugment({"name": "simclr"}, image_size=8, channels=1, n_views=2, dataset="synthetic")
    regs = [("koleo", build("regularizer", "koleo"))]
    optim = OptimConfig(name="sgd", lr=0.05, max_steps=2, warmup_epochs=0.0)
    settings = ModuleSettings(
        optim=optim,
        schedules=plain_schedules(optim, plan.datamodule.info.steps_per_epoch, [0.01]),
        batch_size=16,
        seed=cfg.trainer.seed,
    )
    dm = SSLDataModule(DataSettings(name="synthetic", kwargs=dict(cfg.data.kwargs), batch_size=16))
    dm.setup()
    by_hand = _fit_state(SSLModule(backbone, projector, objective, views, settings, regs), dm)
    assert planned.keys() == by_hand.keys()
    for key in planned:
        assert torch.equal(planned[key], by_hand[key]), key


def test_the_checkpoint_record_rebuilds_the_planned_module() -> None:
    """module_from_record(config, data facts) gives the same state-dict keys and shapes, and the
    planned weights load into it exactly."""
    plan = plan_run(load_config(None, TINY))
    module = SSLModule.from_plan(plan)
    record = plan.parts.record
    rebuilt = module_from_record(record["config"], record["data_info"])
    want = module.state_dict()
    got = rebuilt.state_dict()
    assert {k: tuple(v.shape) for k, v in got.items()} == {k: tuple(v.shape) for k, v in want.items()}
    rebuilt.load_state_dict(want)
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in want.items())
    assert dict(rebuilt.hparams) == record


def test_the_trainer_is_built_from_the_plan_not_the_config(tmp_path: Any) -> None:
    """build_trainer takes the plan's TrainerSettings: length, cadence, time cap, accumulation, loggers."""
    from dimcollapse.training.run import build_trainer

    extra = ["optim.max_steps=7", "optim.max_time_minutes=2", "trainer.log_every=3",
             "trainer.tensorboard=false", "trainer.accumulate_grad_batches=2",
             "trainer.progress_bar=false"]  # fmt: skip
    plan = plan_run(load_config(None, [*TINY, *extra]))
    t = plan.trainer
    spe = plan.datamodule.info.steps_per_epoch
    assert (t.total_steps, t.steps_per_epoch, t.max_epochs) == (7, spe, -(-7 // spe))
    assert t.loggers == ("csv",) and plan.global_batch_size == 16 * 1 * 2
    trainer = build_trainer(t, tmp_path, [])
    assert trainer.max_steps == 7 and trainer.max_epochs == t.max_epochs
    assert trainer.accumulate_grad_batches == 2 and trainer.log_every_n_steps == 3
    timer = [c for c in trainer.callbacks if type(c).__name__ == "Timer"]
    assert len(timer) == 1 and timer[0]._duration == 120.0
    assert [type(lg).__name__ for lg in trainer.loggers] == ["CSVLogger"]
