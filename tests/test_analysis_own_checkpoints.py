"""`dimcollapse analyze --model` on the project's own checkpoints (final.ckpt, last.ckpt) of a real tiny
BYOL run, on scikit-learn's digits: the default (the encoder's r), --embed and --layers, each against the
module's own encoder on the same images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dimcollapse.cli.main import run
from dimcollapse.training.checkpoint import load_run
from dimcollapse.training.run import train
from test_training_smoke import tiny


@pytest.fixture(scope="module")
def byol_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("byol_run")
    train(tiny("objective.name=byol", "objective.kwargs={hidden_dim: 16}", "data.views.recipe=byol"), out)
    return out


def np_erank(z: np.ndarray) -> float:
    eig = np.clip(np.linalg.eigvalsh(np.cov(z.T, bias=True)), 0, None)
    p = eig[eig > 0] / eig.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def _digits() -> torch.Tensor:
    import dimcollapse.data  # noqa: F401
    from dimcollapse.registry import build

    return build("dataset", "digits", train=False).images


def _analyze(ckpt: Path, out: Path, *extra: str) -> dict:
    argv = ["analyze", "--model", str(ckpt), "--data", "digits", "--out", str(out), "--no-figures", *extra]
    assert run(argv) == 0
    return json.loads((out / "metrics.json").read_text())


def test_final_ckpt_default_is_the_encoders_r(byol_run: Path, tmp_path: Path) -> None:
    ckpt = byol_run / "checkpoints" / "final.ckpt"
    m = _analyze(ckpt, tmp_path / "a")
    module = load_run(ckpt).module
    with torch.no_grad():
        r, z = module.encode_eval(_digits())
    assert m["embedding"] == "r" and m["model"]["kind"] == "dimcollapse"
    assert (m["n"], m["d"]) == tuple(r.shape)
    # float32 forward in batches of 256 vs one batch: the erank agrees to the float32 rounding of r
    assert m["erank"] == pytest.approx(np_erank(r.double().numpy()), rel=1e-4)
    assert m["outputs"]["z"]["erank"] == pytest.approx(np_erank(z.double().numpy()), rel=1e-4)
    # BYOL's momentum copies and predictor never run in the encoder's forward: skipped and named, not fatal
    skipped = m["features_skipped"]
    assert "model.objective.predictor.net.0" in skipped
    # momentum copies are either left out of the default layers or, when chosen, skipped
    assert all(name in skipped for name in m["layers"] if name.startswith("model.momentum_target."))
    assert all(name.startswith(("model.momentum_target.", "model.objective.")) for name in skipped)
    assert any("never ran" in w for w in m["warnings"])
    assert "model.backbone.conv1" in m["features"]


def test_last_ckpt_with_embed_and_layers(byol_run: Path, tmp_path: Path) -> None:
    ckpt = byol_run / "checkpoints" / "last.ckpt"
    m = _analyze(ckpt, tmp_path / "b", "--embed", "model.backbone", "--layers", "model.backbone.layer2.*")
    module = load_run(ckpt).module
    with torch.no_grad():
        r = module.model.backbone(module.views.eval_transform(_digits()))
    assert m["erank"] == pytest.approx(np_erank(r.double().numpy()), rel=1e-4)
    assert set(m["layers"]) == {k for k in m["layers"] if k.startswith("model.backbone.layer2.")}
    assert set(m["features"]) == set(m["layers"]) and m["features_skipped"] == []
