"""The seven models of issue 26 through `dimcollapse analyze --model`, one command each, no code written.

    python benchmarks/walk_models.py   # ~1-2 min: one row per model (exit code, embedding, d, erank)

Built here with random weights, small configurations: timm ResNet-18 and ViT and torchvision ResNet-18
(fc = Identity) through the stand-in packages of tests/standins (timm / torchvision cannot be installed
with this torch; same parameter names and entry points), Hugging Face ViTModel and Dinov2Model saved with
``save_pretrained``, a lightly-style BYOL LightningModule checkpoint whose class lives in the current
folder, and a CNN trained in a plain loop (its class beside the weights). Each command runs the installed
``dimcollapse`` script from the folder holding the files, without PYTHONPATH for the user's code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
STANDINS = ROOT / "tests" / "standins"

USER_CODE = '''
import copy
import lightning as L
import torch
from torch import nn


class BYOL(L.LightningModule):
    """lightly-style: backbone ends in AdaptiveAvgPool2d (B, C, 1, 1); momentum copies never run."""

    def __init__(self, width=16, lr=0.06):
        super().__init__()
        self.save_hyperparameters()
        self.backbone = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.projection_head = nn.Sequential(nn.Linear(width, 32), nn.ReLU(), nn.Linear(32, 8))
        self.prediction_head = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 8))
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)

    def forward(self, x):
        return self.prediction_head(self.projection_head(self.backbone(x).flatten(start_dim=1)))


class CNN(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))
'''

VIT_KW = "{img_size: 32, patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2, num_classes: 10}"


def _build(tmp: Path) -> None:
    """Every model file in ``tmp`` (the stand-ins are imported under private names, never as timm)."""
    import importlib.util

    import transformers

    def load(name: str, path: Path):  # type: ignore[no-untyped-def]
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    torch.manual_seed(0)
    timm = load("walk_timm", STANDINS / "timm" / "__init__.py")
    tv = load("walk_tv", STANDINS / "torchvision" / "models" / "__init__.py")
    r18 = tv.resnet18()
    torch.save(r18.state_dict(), tmp / "timm_r18.pth")  # timm's resnet18 has torchvision's names
    vit = timm.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10
    )
    torch.save(vit.state_dict(), tmp / "timm_vit.pth")
    common = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    transformers.ViTModel(transformers.ViTConfig(intermediate_size=64, **common)).save_pretrained(
        tmp / "hf_vit"
    )
    transformers.Dinov2Model(transformers.Dinov2Config(mlp_ratio=2, **common)).save_pretrained(
        tmp / "hf_dinov2"
    )
    backbone = tv.resnet18()
    backbone.fc = torch.nn.Identity()
    torch.save(backbone.state_dict(), tmp / "tv_r18_backbone.pth")
    (tmp / "usercode.py").write_text(textwrap.dedent(USER_CODE))
    user = load("walk_user", tmp / "usercode.py")
    byol = user.BYOL()
    hp = {**dict(byol.hparams), "injected_by_a_callback": True}
    torch.save(
        {"state_dict": byol.state_dict(), "hyper_parameters": hp, "global_step": 10}, tmp / "byol.ckpt"
    )
    torch.save(user.CNN().state_dict(), tmp / "cnn.pt")
    x = torch.randint(0, 256, (600, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp / "images.pt")


# (model, way in, the one command's arguments after `analyze`, needs the stand-ins)
CASES = [
    ("timm ResNet-18", "timm:NAME + local weights",
     ["--model", "timm:resnet18", "--arch-kwargs",
      "{pretrained: true, pretrained_cfg_overlay: {file: timm_r18.pth}}"], True),
    ("timm ViT", "state_dict + --arch timm:NAME",
     ["--model", "timm_vit.pth", "--arch", "timm:vit_tiny_patch16_224", "--arch-kwargs", VIT_KW], True),
    ("timm ViT (patch tokens)", "--embed forward_features --pool patches --layers blocks",
     ["--model", "timm_vit.pth", "--arch", "timm:vit_tiny_patch16_224", "--arch-kwargs", VIT_KW,
      "--embed", "forward_features", "--pool", "patches", "--layers", "blocks"], True),
    ("HF ViTModel", "save_pretrained folder", ["--model", "hf_vit"], False),
    ("HF Dinov2Model", "save_pretrained folder", ["--model", "hf_dinov2"], False),
    ("HF Dinov2Model (tokens)", "--pool tokens --layers blocks",
     ["--model", "hf_dinov2", "--pool", "tokens", "--layers", "blocks"], False),
    ("torchvision ResNet-18, fc = Identity", "state_dict + --arch torchvision:NAME",
     ["--model", "tv_r18_backbone.pth", "--arch", "torchvision:resnet18"], True),
    ("lightly-style BYOL .ckpt", "Lightning ckpt + --arch (class in this folder) + --embed backbone",
     ["--model", "byol.ckpt", "--arch", "usercode:BYOL", "--embed", "backbone"], False),
    ("CNN trained in a plain loop", "state_dict + --arch (class in this folder)",
     ["--model", "cnn.pt", "--arch", "usercode:CNN"], False),
]  # fmt: skip


def main() -> None:
    cli = shutil.which("dimcollapse", path=str(Path(sys.executable).parent)) or "dimcollapse"
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        _build(tmp)
        for i, (model, way, argv, standins) in enumerate(CASES):
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            if standins:
                env["PYTHONPATH"] = str(STANDINS)
            out = f"out{i}"
            cmd = [cli, "analyze", *argv, "--data", "images.pt", "--out", out, "--no-figures"]
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
            shown = " ".join(f"'{a}'" if " " in a else a for a in argv)
            row = {"model": model, "way in": way, "exit": proc.returncode, "command": f"analyze {shown}"}
            if proc.returncode == 0:
                m = json.loads((tmp / out / "metrics.json").read_text())
                row.update(
                    embedding=f"{m['embedding']} ({m.get('embedding_pool') or '-'})",
                    n=m["n"],
                    d=m["d"],
                    erank=round(m["erank"], 2),
                    verdict=m["verdict"][:60],
                    head=(m["model"].get("classifier_head") or {}).get("name"),
                    blocks=len(m.get("features", {})),
                )
            else:
                row["error"] = proc.stderr.strip().splitlines()[-1][:200] if proc.stderr.strip() else "?"
            rows.append(row)
            print(json.dumps(row), flush=True)
    ok = sum(r["exit"] == 0 for r in rows)
    print(f"{ok} of {len(rows)} commands exit 0")


if __name__ == "__main__":
    main()
