"""The training step seam: a registered ``step`` gives the shape of one SSL step. ``views`` is every existing
objective's default; ``masked`` + ``msn`` is a method with its own step shape (MSN, Assran et al. 2022),
its loss checked against a float64 numpy computation and trained end to end from a config."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dimcollapse import contracts
from dimcollapse.errors import ConfigError
from dimcollapse.registry import build, get, names
from dimcollapse.training.config import load_config
from dimcollapse.training.model import SSLModel
from dimcollapse.training.parts import step_name
from dimcollapse.training.run import train
from dimcollapse.training.steps import MaskedStep, ViewsStep, mask_patches
from test_training_smoke import TINY

MSN = ["objective.name=msn", "objective.kwargs={n_prototypes: 16}"]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _msn_reference(z1, z2, t1, t2, q, tau, sharpen, lam) -> float:  # type: ignore[no-untyped-def]
    """MSN's loss written out in float64 numpy: sharpening as the power p^(1/T), renormalised."""
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    qn = unit(q)
    p = [_softmax(unit(z) @ qn.T / tau) for z in (z1, z2)]
    plain = [_softmax(unit(t) @ qn.T / tau) for t in (t1, t2)]
    sharp = [a ** (1 / sharpen) / (a ** (1 / sharpen)).sum(axis=1, keepdims=True) for a in plain]
    ce = 0.5 * (-(sharp[1] * np.log(p[0])).sum(1).mean() - (sharp[0] * np.log(p[1])).sum(1).mean())
    p_bar = np.concatenate(p).mean(axis=0)
    return float(ce + lam * (p_bar * np.log(p_bar)).sum())


def test_msn_loss_equals_the_reference_computation() -> None:
    torch.manual_seed(0)
    loss = build("objective", "msn", dim=6, n_prototypes=11, temperature=0.2, sharpen=0.5, me_max_weight=0.7)
    loss = loss.double()
    z1, z2, t1, t2 = (torch.randn(9, 6, dtype=torch.float64, requires_grad=True) for _ in range(4))
    got = loss(z1, z2, t1, t2)
    q = loss.prototypes.weight.detach().numpy()
    want = _msn_reference(*(a.detach().numpy() for a in (z1, z2, t1, t2)), q, 0.2, 0.5, 0.7)
    # float64, reductions over 9 x 11 terms of size O(1): error ~1e-15; 1e-12 leaves room on any CPU
    assert float(got.detach()) == pytest.approx(want, rel=1e-12, abs=1e-12)
    got.backward()
    assert t1.grad is None and t2.grad is None  # the targets are stop-gradient
    assert z1.grad is not None and loss.prototypes.weight.grad is not None
    stats = loss.last_stats
    assert set(stats) == {"loss", "cross_entropy", "mean_entropy", "target_entropy"}
    assert all(not v.requires_grad for v in stats.values())


def test_mask_patches_masks_the_stated_share_of_whole_patches() -> None:
    torch.manual_seed(3)
    x = torch.randn(6, 3, 10, 10)
    masked, mask = mask_patches(x, patch_size=4, ratio=0.5)
    assert mask.shape == (6, 3, 3)  # ceil(10 / 4) = 3 patches a side, the last ones cut to the image
    assert mask.sum(dim=(1, 2)).tolist() == [round(0.5 * 9)] * 6
    pixels = np.kron(mask.numpy(), np.ones((4, 4), dtype=bool))[:, :10, :10]  # patch -> its pixels
    pixels = np.broadcast_to(pixels[:, None], x.shape)
    assert (masked.numpy()[pixels] == 0).all()
    assert np.array_equal(masked.numpy()[~pixels], x.numpy()[~pixels])
    assert len({tuple(m.flatten().tolist()) for m in mask}) > 1  # each image draws its own patches


def _network(objective: str, kwargs: str) -> SSLModel:
    cfg = load_config(None, [*TINY, f"objective.name={objective}", f"objective.kwargs={kwargs}"])
    return SSLModel.from_config(cfg.model, cfg.objective, in_channels=1, image_size=8)


_VALUES = SimpleNamespace(objective={})  # the schedules' values: msn has no scheduled keyword


def test_masked_step_is_the_masked_anchors_against_the_unmasked_targets() -> None:
    """The step's L_ssl = msn(z~1, z~2, t1, t2) with z~ = g(f(mask(v))) and t = target(v)."""
    torch.manual_seed(0)
    nets = _network("msn", "{n_prototypes: 16}")
    views = [torch.randn(5, 1, 8, 8) for _ in range(2)]
    batch = contracts.StepBatch(views, 2, torch.zeros(5, dtype=torch.long))
    step = MaskedStep(mask_ratio=0.5, patch_size=2)
    torch.manual_seed(11)
    out = step(batch, nets, _VALUES)
    torch.manual_seed(11)
    masked = [mask_patches(v, 2, 0.5)[0] for v in views]
    r, z = nets.encode(torch.cat(masked))
    tr, tz = nets.encode_target(torch.cat(views))
    want = nets.objective(*z.chunk(2), *tz.chunk(2))
    assert torch.equal(out.ssl, want)
    assert all(torch.equal(a, b) for a, b in zip(out.rs, r.chunk(2), strict=True))
    assert out.target_rs is not None and torch.equal(torch.cat(out.target_rs), tr)
    plain = ViewsStep()(batch, nets, _VALUES)  # unmasked views: another loss
    assert not torch.equal(plain.ssl, out.ssl)


def test_existing_objectives_default_to_the_views_step() -> None:
    for name in names("objective"):
        want = "masked" if name == "msn" else "views"
        assert get("objective", name).default_step == want, name
        assert step_name(load_config(None, [f"objective.name={name}"])) == want
    cfg = load_config(None, ["objective.name=msn", "step.name=views"])
    assert step_name(cfg) == "views"  # the config's step wins over the objective's default
    assert set(names("step")) >= {"views", "masked"}


def test_msn_trains_end_to_end_from_a_config(tmp_path: Path) -> None:
    extra = ["objective.name=msn", "objective.kwargs={n_prototypes: 16}",
             "step.kwargs={mask_ratio: 0.4, patch_size: 2}", "optim.max_steps=3"]  # fmt: skip
    m = train(load_config(None, [*TINY, *extra]), tmp_path / "run")
    assert m["steps"] == m["planned_steps"] == 3 and np.isfinite(m["erank_r"])
    step = {"name": "masked", "kwargs": {"mask_ratio": 0.4, "patch_size": 2}}
    assert m["components"]["objective"] == "msn" and m["components"]["step"] == step
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["components"]["step"] == step


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["objective.name=simclr", "step.name=masked"], "no momentum target"),
        ([*MSN, "step.kwargs={mask_ratio: 1.5}"], "mask_ratio"),
        ([*MSN, "step.name=jigsaw"], "jigsaw"),
        ([*MSN, "data.views.overrides={local_crops: 2, local_size: 4}"], "local crops"),
    ],
)
def test_a_step_that_does_not_fit_is_refused_before_anything_is_written(
    tmp_path: Path, extra: list[str], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        train(load_config(None, [*TINY, *extra]), tmp_path / "run")
    assert not (tmp_path / "run").exists()
