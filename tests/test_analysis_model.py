"""`dimcollapse analyze --model`: Lightning .ckpt, state_dict + --arch, TorchScript and pickles of models
written here in the test (not by dimcollapse), checked against numpy on the same inputs."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from dimcollapse.cli.main import run

USER_CODE = '''
import lightning as L
import torch
from torch import nn


class Encoder(nn.Module):
    """A lightly-style model: backbone + projection_head."""

    def __init__(self, width=12, out=6):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(10, width), nn.ReLU(), nn.Linear(width, width))
        self.projection_head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, out))

    def forward(self, x):
        return self.projection_head(self.backbone(x))


class TinyConv(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


class SoloMethod(L.LightningModule):
    """solo-learn style: hyper-parameters saved, forward returns a dict of features."""

    def __init__(self, proj_dim=5, lr=0.1):
        super().__init__()
        self.save_hyperparameters()
        self.backbone = nn.Linear(10, 8)
        self.projector = nn.Linear(8, proj_dim)

    def forward(self, x):
        feats = self.backbone(x)
        return {"feats": feats, "z": self.projector(feats)}

    def training_step(self, batch, idx):
        return self(batch[0])["z"].pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
'''


@pytest.fixture()
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "usercode.py").write_text(textwrap.dedent(USER_CODE))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("usercode", None)
    import usercode

    x = torch.randn(120, 10, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / "inputs.pt")
    return usercode, x


def np_erank(z: np.ndarray) -> float:
    eig = np.clip(np.linalg.eigvalsh(np.cov(z.T, bias=True)), 0, None)
    p = eig[eig > 0] / eig.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    return " ".join(capsys.readouterr().err.split())  # the CLI may wrap its one-line error


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_state_dict_with_module_class_arch(tmp_path: Path, user) -> None:
    usercode, x = user
    model = usercode.Encoder(width=12)
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, tmp_path / "sd.pt")  # a DDP save
    out = tmp_path / "out"
    code = run(
        [
            "analyze",
            "--model",
            str(tmp_path / "sd.pt"),
            "--arch",
            "usercode:Encoder",
            "--arch-kwargs",
            "{width: 12}",
            "--data",
            str(tmp_path / "inputs.pt"),
            "--out",
            str(out),
            "--layers",
            "projection_head.*",
            "--k",
            "5",
            "--no-figures",
        ]
    )
    assert code == 0
    m = _metrics(out)
    with torch.no_grad():
        z = model(x).double().numpy()
    assert m["erank"] == pytest.approx(np_erank(z), rel=1e-9) and m["n"] == 120 and m["d"] == 6
    assert set(m["layers"]) == {"projection_head.0", "projection_head.2"}
    sv = np.linalg.svd(model.projection_head[2].weight.detach().double().numpy(), compute_uv=False)
    assert m["layers"]["projection_head.2"]["sigma_max"] == pytest.approx(sv[0], rel=1e-9)
    assert m["alignment"][0]["first"] == "projection_head.0" and 0 <= m["alignment"][0]["mean_diag"] <= 1
    assert m["features"]["projection_head.2"]["erank"] == pytest.approx(np_erank(z), rel=1e-6)
    # the backbone's output instead of the head's
    assert (
        run(
            [
                "analyze",
                "--model",
                str(tmp_path / "sd.pt"),
                "--arch",
                "usercode:Encoder",
                "--embed",
                "backbone",
                "--data",
                str(tmp_path / "inputs.pt"),
                "--out",
                str(out),
                "--k",
                "5",
                "--no-figures",
            ]
        )
        == 0
    )
    with torch.no_grad():
        assert _metrics(out)["erank"] == pytest.approx(np_erank(model.backbone(x).double().numpy()), rel=1e-9)


def test_wrong_architecture_names_keys(tmp_path: Path, user, capsys: pytest.CaptureFixture[str]) -> None:
    usercode, _ = user
    torch.save(usercode.Encoder(width=16).state_dict(), tmp_path / "sd.pt")
    code = run(
        [
            "analyze",
            "--model",
            str(tmp_path / "sd.pt"),
            "--arch",
            "usercode:Encoder",
            "--data",
            str(tmp_path / "inputs.pt"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = _err(capsys)
    assert code == 2 and "shape mismatches" in err and "--arch-kwargs" in err
    assert run(["analyze", "--model", str(tmp_path / "sd.pt"), "--data", "x"]) == 2
    assert "pass --arch" in _err(capsys)


def test_lightning_checkpoint_of_a_user_module(
    tmp_path: Path, user, capsys: pytest.CaptureFixture[str]
) -> None:
    usercode, x = user
    module = usercode.SoloMethod(proj_dim=4)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=30)
    trainer = L.Trainer(
        max_steps=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        enable_checkpointing=False,
    )
    trainer.fit(module, data)
    trainer.save_checkpoint(tmp_path / "solo.ckpt")
    out = tmp_path / "out"
    args = ["--data", str(tmp_path / "inputs.pt"), "--out", str(out), "--k", "5", "--no-figures"]
    assert run(["analyze", "--model", str(tmp_path / "solo.ckpt"), *args]) == 2
    assert "--arch package.module:Class" in _err(capsys)
    assert (
        run(["analyze", "--model", str(tmp_path / "solo.ckpt"), "--arch", "usercode:SoloMethod", *args]) == 0
    )
    m = _metrics(out)
    with torch.no_grad():
        feats = module(x)["feats"].double().numpy()
    assert m["embedding"] == "feats" and m["model"]["kind"] == "lightning" and m["model"]["global_step"] == 2
    assert m["erank"] == pytest.approx(np_erank(feats), rel=1e-9)


def test_torchscript_and_pickles(tmp_path: Path, user, capsys: pytest.CaptureFixture[str]) -> None:
    usercode, x = user
    model = usercode.Encoder().eval()
    torch.jit.trace(model, x[:2]).save(str(tmp_path / "scripted.pt"))
    torch.save(model, tmp_path / "whole.pt")
    args = ["--data", str(tmp_path / "inputs.pt"), "--k", "5", "--no-figures"]
    with torch.no_grad():
        expected = np_erank(model(x).double().numpy())
    assert (
        run(["analyze", "--model", str(tmp_path / "scripted.pt"), "--out", str(tmp_path / "ts"), *args]) == 0
    )
    assert _metrics(tmp_path / "ts")["erank"] == pytest.approx(expected, rel=1e-6)
    assert _metrics(tmp_path / "ts")["model"]["kind"] == "torchscript"
    assert run(["analyze", "--model", str(tmp_path / "whole.pt"), "--out", str(tmp_path / "pk"), *args]) == 2
    assert "--trust-pickle" in _err(capsys)
    assert not (tmp_path / "pk" / "metrics.json").exists()
    assert (
        run(
            [
                "analyze",
                "--model",
                str(tmp_path / "whole.pt"),
                "--trust-pickle",
                "--out",
                str(tmp_path / "pk"),
                *args,
            ]
        )
        == 0
    )
    assert _metrics(tmp_path / "pk")["erank"] == pytest.approx(expected, rel=1e-9)


def test_registered_backbone_on_a_registered_dataset_with_figures(tmp_path: Path) -> None:
    from dimcollapse.registry import build

    torch.manual_seed(0)
    model = build("backbone", "mlp", in_channels=1, image_size=8, hidden_dims=[16, 8])
    torch.save(model.state_dict(), tmp_path / "mlp.pt")
    out = tmp_path / "out"
    code = run(
        [
            "analyze",
            "--model",
            str(tmp_path / "mlp.pt"),
            "--arch",
            "mlp",
            "--arch-kwargs",
            '{"in_channels": 1, "image_size": 8, "hidden_dims": [16, 8]}',
            "--data",
            "digits",
            "--limit",
            "200",
            "--out",
            str(out),
            "--k",
            "5",
            "--map",
            "pca",
        ]
    )
    assert code == 0
    m = _metrics(out)
    assert m["n"] == 200 and m["d"] == 8 and m["n_classes"] == 10 and m["data"] == "digits/test"
    assert {"figures/weight_spectra.png", "figures/feature_spectra.png", "figures/spectrum.png"} <= set(
        m["figures"]
    )
    assert (out / "layers.npz").is_file() and "digits" in (out / "report" / "index.html").read_text()


def test_a_state_dict_is_not_read_as_embeddings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # before: the only 2-D weight (64 x 8) was silently analysed as 64 embeddings
    torch.save(nn.Sequential(nn.Linear(8, 64, bias=False)).state_dict(), tmp_path / "state_dict.pt")
    assert run(["analyze", str(tmp_path / "state_dict.pt"), "--out", str(tmp_path / "o")]) == 2
    err = _err(capsys)
    assert "model state_dict" in err and "--model" in err and "--arch" in err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_image_folder_data(tmp_path: Path, user) -> None:
    from PIL import Image

    usercode, _ = user
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(
                tmp_path / "imgs" / cls / f"{i}.png"
            )
    model = usercode.TinyConv()
    torch.save(model.state_dict(), tmp_path / "conv.pt")
    out = tmp_path / "out"
    args = ["--arch", "usercode:TinyConv", "--data", str(tmp_path / "imgs"), "--image-size", "16", "--k", "3"]
    assert (
        run(["analyze", "--model", str(tmp_path / "conv.pt"), *args, "--out", str(out), "--no-figures"]) == 0
    )
    m = _metrics(out)
    assert m["n"] == 12 and m["d"] == 6 and m["n_classes"] == 2 and set(m["layers"]) == {"0"}
