"""The new losses equal lightly's on the same inputs in float64 (to 1e-6): MoCo (NT-Xent with a memory
bank), DCL, DINO, SwAV (with and without a queue), W-MSE, KoLeo and SIGReg. lightly is installed without
its dependencies (``pip install --no-deps lightly``); its loss package imports torchvision.ops, for which
this test puts a minimal stand-in into sys.modules (only the two names lightly imports, never called)."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from dimcollapse.registry import build
from dimcollapse.training.schedules import OBJECTIVE_SCHEDULES

TOL = {"rtol": 1e-6, "atol": 1e-6}


def _import_lightly_loss() -> Any:
    pytest.importorskip("lightly", reason="lightly is installed by `make setup` (pip install --no-deps)")
    if "torchvision" not in sys.modules:  # a stand-in with the names lightly's modules import
        tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")

        def roi_align(*args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("stand-in for torchvision.ops.roi_align (not used by these tests)")

        class StochasticDepth(torch.nn.Module):
            """Stand-in for torchvision.ops.StochasticDepth (not used by these tests)."""

        ops.roi_align, ops.StochasticDepth = roi_align, StochasticDepth  # type: ignore[attr-defined]
        tv.ops = ops  # type: ignore[attr-defined]
        tv.__version__ = "0.0"  # type: ignore[attr-defined]
        sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, ops
        try:
            import lightly.loss as loss_module
        finally:
            del sys.modules["torchvision"], sys.modules["torchvision.ops"]
        return loss_module
    import lightly.loss as loss_module

    return loss_module


@pytest.fixture(scope="module")
def lightly_loss() -> Any:
    return _import_lightly_loss()


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_moco_equals_ntxent_with_memory_bank(lightly_loss: Any) -> None:
    """Each direction of MoCo v2+ is lightly's NT-Xent with the other view's key queue as memory bank,
    and the queues after the step are lightly's banks after its update."""
    n, d, size = 6, 5, 18
    z1, z2, t1, t2 = (_randn(n, d, seed=s) for s in range(4))
    torch.manual_seed(1)
    ours = build("objective", "mocov2plus", dim=d, queue_size=size, temperature=0.2).double()
    banks = [ours.queue1.rows.clone(), ours.queue2.rows.clone()]
    value = ours(z1, z2, t1, t2)
    ref, after = 0.0, []
    for q, k, bank in ((z1, t2, banks[1]), (z2, t1, banks[0])):
        crit = lightly_loss.NTXentLoss(temperature=0.2, memory_bank_size=(size, d)).double()
        crit.memory_bank.bank = bank.clone()
        crit.memory_bank.bank_ptr.zero_()
        ref = ref + 0.5 * crit(q.clone().requires_grad_(), k)
        after.append(crit.memory_bank.bank)
    torch.testing.assert_close(value, ref, **TOL)
    torch.testing.assert_close(ours.queue2.rows, after[0], **TOL)  # keys of view 2 pushed into queue 2
    torch.testing.assert_close(ours.queue1.rows, after[1], **TOL)


def test_dcl_equals_lightly(lightly_loss: Any) -> None:
    z1, z2 = _randn(7, 4, seed=1), _randn(7, 4, seed=2)
    for tau in (0.1, 0.5):
        ours = build("objective", "dcl", temperature=tau)(z1, z2)
        torch.testing.assert_close(ours, lightly_loss.DCLLoss(temperature=tau)(z1, z2), **TOL)


@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_dino_multicrop_equals_lightly_with_centre_and_warmup(lightly_loss: Any, epoch: int) -> None:
    n, d, k = 5, 4, 9
    torch.manual_seed(0)
    ours = build("objective", "dino", dim=d, n_prototypes=k, center_momentum=0.8).double()
    ours.center.copy_(_randn(1, k, seed=9) * 0.1)
    schedule = OBJECTIVE_SCHEDULES["dino"]  # the run's schedule gives the teacher temperature of the epoch
    settings = {"teacher_temp": 0.07, "warmup_teacher_temp": 0.04, "warmup_teacher_temp_epochs": 3,
                "freeze_last_layer_epochs": 0.0}  # fmt: skip
    values = schedule.values(settings, epoch + 0.5)
    with torch.no_grad():  # a teacher that differs from the student
        ours.teacher_prototypes.module.weight.add_(0.1 * _randn(k, d, seed=8))
    zs = [_randn(n, d, seed=s) for s in range(4)]  # 2 global + 2 local crops
    ts = [_randn(n, d, seed=10 + s) for s in range(2)]
    crit = lightly_loss.DINOLoss(output_dim=k, warmup_teacher_temp=0.04, teacher_temp=0.07,
                                 warmup_teacher_temp_epochs=3, center_momentum=0.8).double()  # fmt: skip
    crit.center.copy_(ours.center.view(1, 1, k))
    w_s = F.normalize(ours.prototypes.weight.detach(), dim=1)
    w_t = F.normalize(ours.teacher_prototypes.module.weight, dim=1)
    student = [F.normalize(z, dim=1) @ w_s.T for z in zs]
    teacher = [F.normalize(t, dim=1) @ w_t.T for t in ts]
    ref = crit(teacher, student, epoch=epoch)
    torch.testing.assert_close(ours.forward_views(zs, ts, **values), ref, **TOL)
    torch.testing.assert_close(ours.center, crit.center.view(1, k), **TOL)


@pytest.mark.parametrize("queue", [False, True])
def test_swav_multicrop_equals_lightly(lightly_loss: Any, queue: bool) -> None:
    n, d, k, size = 6, 4, 5, 12
    torch.manual_seed(0)
    ours = build("objective", "swav", dim=d, n_prototypes=k, queue_size=size if queue else 0).double()
    if queue:  # fill the queues (as after earlier steps)
        for a in range(2):
            ours.queues[a].push(F.normalize(_randn(size, d, seed=20 + a), dim=1))
    with torch.no_grad():
        ours.prototypes.weight.copy_(F.normalize(ours.prototypes.weight, dim=1))
    zs = [_randn(n, d, seed=s) for s in range(5)]  # 2 global + 3 local crops
    c = ours.prototypes.weight.detach()
    scores = [F.normalize(z, dim=1) @ c.T for z in zs]
    queue_scores = [ours.queues[a].values() @ c.T for a in range(2)] if queue else None
    ref = lightly_loss.SwaVLoss(temperature=0.1, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)(
        scores[:2], scores[2:], queue_scores
    )
    torch.testing.assert_close(ours.forward_views(zs), ref.squeeze(), **TOL)


def test_wmse_equals_lightly(lightly_loss: Any) -> None:
    n, d, w = 16, 3, 8
    z1, z2 = _randn(n, d, seed=1), _randn(n, d, seed=2) + 0.5 * _randn(n, d, seed=1)
    ours = build("objective", "wmse", w_size=w, w_iter=2)
    crit = lightly_loss.WMSELoss(embedding_dim=d, w_size=w, w_iter=2).double()
    torch.manual_seed(5)  # the same random sub-batches
    value = ours(z1, z2)
    torch.manual_seed(5)
    torch.testing.assert_close(value, crit(torch.cat([z1, z2])), **TOL)


def test_koleo_equals_lightly(lightly_loss: Any) -> None:
    x = _randn(12, 5, seed=3)
    ours = build("regularizer", "koleo")([x])
    torch.testing.assert_close(ours, lightly_loss.KoLeoLoss()(x), **TOL)
    two = 0.5 * build("regularizer", "koleo")([x, 2 * x.flip(0)])
    torch.testing.assert_close(two, 0.5 * lightly_loss.KoLeoLoss()(x), **TOL)  # scale-free, order-free


def test_sigreg_equals_lightly(lightly_loss: Any) -> None:
    x = _randn(20, 6, seed=4) * 1.3 + 0.2
    torch.manual_seed(7)  # both draw the random directions as randn(D, M) from the global RNG
    ours = build("regularizer", "sigreg", num_directions=32)([x])
    torch.manual_seed(7)
    ref = lightly_loss.SIGReg(num_vectors=32)(x)
    torch.testing.assert_close(ours, ref, **TOL)
