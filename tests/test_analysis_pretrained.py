"""`analyze --model` on the models researchers have: a Hugging Face save_pretrained folder and a Hub id from
the local cache (ViTModel, Dinov2Model), `timm:NAME` with local weights, `--arch timm:NAME` and
`--arch torchvision:NAME` for a state_dict (a ResNet-18 saved with fc = Identity), a lightly-style BYOL
LightningModule; each against the same model run here on the same images.

torchvision and timm are the stand-ins of tests/standins (same parameter names, real loading code under
test), reached through PYTHONPATH in a subprocess so that they never shadow anything in this process."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

STANDINS = Path(__file__).resolve().parent / "standins"
IMAGENET = (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))


def np_erank(z: np.ndarray) -> float:
    eig = np.clip(np.linalg.eigvalsh(np.cov(z.T, bias=True)), 0, None)
    p = eig[eig > 0] / eig.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def _cli(
    tmp: Path, *argv: str, env: dict[str, str] | None = None, standins: bool = True
) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess; ``standins`` puts tests/standins (torchvision, timm) on its PYTHONPATH.

    Not for transformers: it would find the torchvision stand-in and try to use it."""
    path = [str(STANDINS), str(tmp)] if standins else [str(tmp)]
    full = {**os.environ, "PYTHONPATH": os.pathsep.join(path), **(env or {})}
    code = "import sys; from dimcollapse.cli.main import run; sys.exit(run(sys.argv[1:]))"
    out = [] if "--out" in argv else ["--out", "out"]
    cmd = [sys.executable, "-c", code, "analyze", *argv, *out, "--no-figures", "--k", "5"]
    return subprocess.run(cmd, cwd=tmp, env=full, capture_output=True, text=True, timeout=600)


def _metrics(tmp: Path, out: str = "out") -> dict:
    return json.loads((tmp / out / "metrics.json").read_text())


def _standin(name: str, path: Path) -> ModuleType:
    """A stand-in module loaded under a private name (never as torchvision / timm in this process)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture()
def images(tmp_path: Path) -> torch.Tensor:
    x = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / "img.pt")
    return x


def _normalised(x: torch.Tensor, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x.float() / 255 - m) / s


def _tiny_hf(kind: str) -> torch.nn.Module:
    import transformers

    common = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    if kind == "vit":
        return transformers.ViTModel(transformers.ViTConfig(intermediate_size=64, **common))
    return transformers.Dinov2Model(transformers.Dinov2Config(mlp_ratio=2, **common))


@pytest.mark.parametrize("kind", ["vit", "dinov2"])
def test_save_pretrained_folder_cls_token_by_default(tmp_path: Path, images: torch.Tensor, kind: str) -> None:
    torch.manual_seed(0)
    model = _tiny_hf(kind).eval()
    model.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.25, 0.3], "size": {"height": 32}})
    )
    proc = _cli(tmp_path, "--model", "hf", "--data", "img.pt", "--out", "out", standins=False)
    assert proc.returncode == 0, proc.stderr
    m = _metrics(tmp_path)
    x = _normalised(images, np.array([0.4, 0.5, 0.6]), np.array([0.2, 0.25, 0.3]))  # the folder's statistics
    with torch.no_grad():
        out = model(pixel_values=x, output_hidden_states=True)
    cls = out.last_hidden_state[:, 0].double().numpy()
    assert (m["embedding"], m["embedding_pool"], m["model"]["kind"]) == (
        "last_hidden_state",
        "cls",
        "transformers",
    )
    assert m["erank"] == pytest.approx(np_erank(cls), rel=1e-4)
    # every block's residual stream is an output, its class token measured
    blocks = [k for k in m["outputs"] if k.startswith("hidden_states.")]
    assert len(blocks) == 3 and m["outputs"]["hidden_states.1"]["erank"] == pytest.approx(
        np_erank(out.hidden_states[1][:, 0].double().numpy()), rel=1e-4
    )
    assert any("N <= D" in w for w in m["warnings"]) is (40 <= 32)
    # the token mean instead of the class token
    proc = _cli(
        tmp_path, "--model", "hf", "--data", "img.pt", "--out", "mean", "--pool", "mean", standins=False
    )
    assert proc.returncode == 0, proc.stderr
    mean = out.last_hidden_state.mean(1).double().numpy()
    assert _metrics(tmp_path, "mean")["erank"] == pytest.approx(np_erank(mean), rel=1e-4)


def test_hub_id_from_the_local_cache_and_a_missing_one(tmp_path: Path, images: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = _tiny_hf("vit").eval()
    snap = tmp_path / "hf_home" / "hub" / "models--someorg--tiny-vit" / "snapshots" / "0123abcd"
    model.save_pretrained(snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0123abcd")
    env = {"HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    proc = _cli(
        tmp_path, "--model", "someorg/tiny-vit", "--data", "img.pt", "--out", "out", env=env, standins=False
    )
    assert proc.returncode == 0, proc.stderr
    with torch.no_grad():
        cls = model(pixel_values=_normalised(images, *(np.full(3, 0.5),) * 2)).last_hidden_state[:, 0]
    assert _metrics(tmp_path)["erank"] == pytest.approx(np_erank(cls.double().numpy()), rel=1e-4)
    proc = _cli(
        tmp_path, "--model", "someorg/absent", "--data", "img.pt", "--out", "missing", env=env, standins=False
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "someorg/absent" in proc.stderr and "local Hugging Face cache" in proc.stderr
    assert not (tmp_path / "missing").exists()


def test_torchvision_resnet_saved_with_fc_identity(tmp_path: Path, images: torch.Tensor) -> None:
    tv = _standin("standin_tv_models", STANDINS / "torchvision" / "models" / "__init__.py")
    torch.manual_seed(0)
    model = tv.resnet18().eval()
    model.fc = torch.nn.Identity()
    torch.save(model.state_dict(), tmp_path / "backbone.pth")
    proc = _cli(tmp_path, "--model", "backbone.pth", "--arch", "torchvision:resnet18", "--data", "img.pt")
    assert proc.returncode == 0, proc.stderr
    m = _metrics(tmp_path)
    with torch.no_grad():
        feats = model(_normalised(images, np.full(3, 0.5), np.full(3, 0.5))).double().numpy()
    # fc is not in the file: loaded without it, named, and its input (the 512-d features) analysed
    assert m["model"]["missing_keys"] == ["fc.bias", "fc.weight"]
    assert (m["embedding"], m["d"], m["model"]["classifier_head"]["name"]) == ("penultimate", 512, "fc")
    assert m["erank"] == pytest.approx(np_erank(feats), rel=1e-4)
    assert any("N <= D" in w for w in m["warnings"])  # 40 images for 512 dimensions
    assert "--output output" in proc.stdout.replace("\n", " ")


def test_timm_models_with_local_weights(tmp_path: Path, images: torch.Tensor) -> None:
    timm = _standin("standin_timm", STANDINS / "timm" / "__init__.py")
    vit_kw = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
    torch.manual_seed(0)
    vit = timm.VisionTransformer(num_classes=10, **vit_kw).eval()
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    kw = "{img_size: 32, patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2, num_classes: 10}"
    argv = [
        "--model",
        "vit.pth",
        "--arch",
        "timm:vit_tiny_patch16_224",
        "--arch-kwargs",
        kw,
        "--data",
        "img.pt",
    ]
    proc = _cli(tmp_path, *argv)
    assert proc.returncode == 0, proc.stderr
    m = _metrics(tmp_path)
    with torch.no_grad():  # the pretrained_cfg's ImageNet statistics; the class token before the head
        cls = vit.forward_features(_normalised(images, *IMAGENET))[:, 0].double().numpy()
    assert (m["embedding"], m["model"]["classifier_head"]["name"]) == ("penultimate", "head")
    assert m["erank"] == pytest.approx(np_erank(cls), rel=1e-4)
    # timm:NAME with pretrained_cfg_overlay=dict(file=...): the same weights through timm's own loader
    overlay = kw[:-1] + ", pretrained: true, pretrained_cfg_overlay: {file: vit.pth}}"
    proc = _cli(
        tmp_path, "--model", "timm:vit_tiny_patch16_224", "--arch-kwargs", overlay, "--data", "img.pt"
    )
    assert proc.returncode == 0, proc.stderr
    assert _metrics(tmp_path)["erank"] == pytest.approx(m["erank"], rel=1e-9)


BYOL = '''
import copy
import lightning as L
import torch
from torch import nn


class BYOL(L.LightningModule):
    """lightly-style: backbone ends in AdaptiveAvgPool2d (B, C, 1, 1), momentum copies that never run."""

    def __init__(self, width=8, lr=0.06):
        super().__init__()
        self.save_hyperparameters()
        self.backbone = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.projection_head = nn.Sequential(nn.Linear(width, 16), nn.ReLU(), nn.Linear(16, 4))
        self.prediction_head = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 4))
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)

    def forward(self, x):
        return self.prediction_head(self.projection_head(self.backbone(x).flatten(start_dim=1)))
'''


def test_lightly_style_byol_checkpoint(tmp_path: Path, images: torch.Tensor) -> None:
    (tmp_path / "byol_code.py").write_text(textwrap.dedent(BYOL))
    byol = _standin("byol_code", tmp_path / "byol_code.py")
    torch.manual_seed(0)
    model = byol.BYOL().eval()
    hp = {**dict(model.hparams), "callback_injected": True}  # a key the constructor does not take
    torch.save(
        {"state_dict": model.state_dict(), "hyper_parameters": hp, "global_step": 5}, tmp_path / "b.ckpt"
    )
    argv = ["--model", "b.ckpt", "--arch", "byol_code:BYOL", "--embed", "backbone", "--data", "img.pt"]
    proc = _cli(
        tmp_path, *argv, standins=False
    )  # lightning imports torchmetrics, which would find the stand-in
    assert proc.returncode == 0, proc.stderr
    m = _metrics(tmp_path)
    with torch.no_grad():
        r = model.backbone(_normalised(images, np.full(3, 0.5), np.full(3, 0.5))).flatten(1).double().numpy()
    assert m["erank"] == pytest.approx(np_erank(r), rel=1e-4) and m["d"] == 8  # (B, 8, 1, 1) -> 8 features
    assert m["model"]["dropped_hyper_parameters"] == ["callback_injected"]
    # the momentum copies never run: left out of the default layers, or skipped and named, never fatal
    assert all(n in m["features_skipped"] for n in m["layers"] if "momentum" in n)
