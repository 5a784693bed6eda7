"""The new objectives optimise, validate their input, keep their queues in eval mode, and share one
momentum schedule; DINO's teacher-temperature warm-up and SwAV's unit prototypes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.objectives import ema_update
from dimcollapse.objectives.queue import FeatureQueue
from dimcollapse.registry import build, get
from dimcollapse.training.ema import EMAHook
from dimcollapse.training.schedules import (
    OBJECTIVE_SCHEDULES,
    MomentumSchedule,
    cosine_momentum,
    momentum_schedule,
    teacher_temperature,
)

KW: dict[str, dict[str, Any]] = {
    # m = 0: the key encoder is the online one (with a lagging target the positives' cosine falls while
    # the online network trains, which is MoCo's dynamics, not a failure to optimise)
    "mocov2plus": {"dim": 8, "queue_size": 64},
    "mocov3": {"dim": 8, "hidden_dim": 16},
    "nnclr": {"dim": 8, "hidden_dim": 16, "queue_size": 64},
    "nnbyol": {"dim": 8, "hidden_dim": 16, "queue_size": 64},
    "dino": {"dim": 8, "n_prototypes": 16},
    "swav": {"dim": 8, "n_prototypes": 6},
    "ressl": {"dim": 8, "queue_size": 64},
    "vibcreg": {},
    "wmse": {"w_size": 32},
    "dcl": {},
}
MOMENTUM = {"mocov2plus": (0.0, 0.0), "ressl": (0.0, 0.0), "dino": (0.9, 1.0)}  # (base, final) of the run


def _two_views(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)


def _call(loss: Any, model: Any, target: Any, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    z1, z2 = model(v1), model(v2)
    out: torch.Tensor = loss(z1, z2, target(v1), target(v2)) if loss.uses_momentum_target else loss(z1, z2)
    return out


@pytest.mark.parametrize("name", sorted(KW))
def test_adam_steps_decrease_each_loss(name: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 10)
    # nonlinear: W-MSE's loss is invariant to an invertible linear encoder (whitening undoes it)
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8))
    loss = build("objective", name, **KW[name])
    target = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=1e-2)
    fixed = _two_views(x)
    held_out = torch.randn(64, 10)

    def evaluate() -> float:
        """On a copy (the evaluation must not write the queues / centre) whose queues hold the current
        keys of 64 held-out images: the negatives / support set the method trains against."""
        probe = copy.deepcopy(loss)
        for module in probe.modules():
            if isinstance(module, FeatureQueue):
                with torch.no_grad():
                    module.rows.copy_(torch.nn.functional.normalize(target(held_out), dim=1))
        with torch.no_grad():
            torch.manual_seed(3)  # W-MSE's sub-batches
            return float(_call(probe, model, target, *fixed))

    start = evaluate()
    for step in range(60):  # a stream of new images: the queues never hold keys of the evaluated ones
        value = _call(loss, model, target, *_two_views(torch.randn(64, 10)))
        opt.zero_grad()
        value.backward()
        opt.step()
        if loss.uses_momentum_target:
            m = cosine_momentum(step / 60, *MOMENTUM.get(name, type(loss).default_momentum))
            ema_update(target, model, m)
            EMAHook(loss.momentum_pairs()).step(m)
    assert evaluate() < start - 0.02 * abs(start)


def test_queues_are_written_in_training_mode_only() -> None:
    loss = build("objective", "mocov2plus", dim=4, queue_size=8)
    z = [torch.randn(4, 4) for _ in range(4)]
    before = loss.queue1.rows.clone()
    loss.eval()
    loss(*z)
    assert torch.equal(loss.queue1.rows, before)
    loss.train()
    loss(*z)
    torch.testing.assert_close(loss.queue1.rows[:4], torch.nn.functional.normalize(z[2], dim=1))
    assert int(loss.queue1.ptr) == 4


def test_one_momentum_schedule_for_every_ema_method() -> None:
    kws = {"byol": {"dim": 4, "hidden_dim": 4}, "nnbyol": {"dim": 4, "hidden_dim": 4, "queue_size": 4},
           "mocov2plus": {"dim": 4, "queue_size": 4}, "mocov3": {"dim": 4, "hidden_dim": 4},
           "dino": {"dim": 4, "n_prototypes": 3}, "ressl": {"dim": 4, "queue_size": 4}}  # fmt: skip
    for name, kw in kws.items():
        loss = build("objective", name, **kw)
        assert loss.uses_momentum_target, name
        with pytest.raises(ConfigError, match="base_momentum"):  # the objective holds no schedule
            build("objective", name, base_momentum=0.9, **kw)
        sched = momentum_schedule(type(loss), {"base_momentum": 0.9, "final_momentum": None}, {})
        assert sched is not None
        for p in (0.0, 0.3, 1.0):
            assert sched(p) == pytest.approx(cosine_momentum(p, 0.9, 1.0)), name
        with pytest.raises(ConfigError, match="base_momentum"):
            momentum_schedule(type(loss), {"base_momentum": 1.1}, {})
    dino = momentum_schedule(get("objective", "dino"), {}, {})
    assert dino is not None and dino(0.0) == pytest.approx(0.996)  # DINO's default, from the class
    assert momentum_schedule(get("objective", "simclr"), {}, {}) is None
    with pytest.raises(ConfigError, match="no momentum target"):
        momentum_schedule(get("objective", "simclr"), {"base_momentum": 0.9}, {})
    assert MomentumSchedule(0.99, 1.0)(2.0) == 1.0  # clipped to the end of training


def test_dino_teacher_temperature_warmup_and_ema_prototypes() -> None:
    assert [teacher_temperature(e, 0.04, 0.07, 4) for e in (0, 1.5, 3, 10)] == pytest.approx(
        [0.04, 0.05, 0.07, 0.07]
    )
    loss = build("objective", "dino", dim=4, n_prototypes=5)
    settings = {"teacher_temp": 0.07, "warmup_teacher_temp": 0.04, "warmup_teacher_temp_epochs": 4,
                "freeze_last_layer_epochs": 0.0}  # fmt: skip
    values = OBJECTIVE_SCHEDULES["dino"].values(settings, 1.5)
    assert values["teacher_temp"] == pytest.approx(0.05)
    z = [torch.randn(6, 4) for _ in range(4)]
    loss(*z, **values)
    assert loss.last_stats["teacher_temp"].item() == pytest.approx(0.05)
    with torch.no_grad():
        loss.prototypes.weight.add_(1.0)
    old = loss.teacher_prototypes.module.weight.clone()
    EMAHook(loss.momentum_pairs()).step(0.75)
    expected = 0.75 * old + 0.25 * loss.prototypes.weight
    torch.testing.assert_close(loss.teacher_prototypes.module.weight, expected)
    assert not loss.teacher_prototypes.module.weight.requires_grad


def test_swav_prototypes_are_unit_rows_and_frozen_early() -> None:
    loss = build("objective", "swav", dim=4, n_prototypes=6)
    settings = {"queue_start_epoch": 0.0, "freeze_prototypes_epochs": 1.0}
    early, later = (OBJECTIVE_SCHEDULES["swav"].values(settings, e) for e in (0.0, 1.0))
    with torch.no_grad():
        loss.prototypes.weight.mul_(3.0)
    z1, z2 = torch.randn(8, 4, requires_grad=True), torch.randn(8, 4)
    loss.forward_views([z1, z2], **early).backward()
    torch.testing.assert_close(loss.prototypes.weight.norm(dim=1), torch.ones(6))
    grad = loss.prototypes.weight.grad
    assert grad is not None and float(grad.abs().max()) == 0.0  # frozen in epoch 0 (in the graph for DDP)
    assert z1.grad is not None and float(z1.grad.abs().max()) > 0
    loss.forward_views([z1, z2], **later).backward()
    assert float(loss.prototypes.weight.grad.abs().max()) > 0


def test_bad_input_messages() -> None:
    z = torch.randn(8, 4)
    for name in ("mocov2plus", "mocov3", "nnbyol", "ressl", "dino"):
        kw = {"dim": 4, **({"hidden_dim": 4} if name in ("mocov3", "nnbyol") else {})}
        with pytest.raises(InputError, match="momentum target"):
            build("objective", name, **kw)(z, z)
    with pytest.raises(InputError, match="multiple of w_size"):
        build("objective", "wmse", w_size=6)(z, z)
    with pytest.raises(ConfigError, match="must exceed the embedding size"):
        build("objective", "wmse", w_size=4)(z, z)
    with pytest.raises(InputError, match="dim"):
        build("objective", "nnclr")
    with pytest.raises(ConfigError, match="local_crops"):
        from dimcollapse.data.views import ViewAugment

        ViewAugment({"name": "simclr", "local_crops": -1}, image_size=8, channels=1)
