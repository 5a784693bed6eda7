"""A model class in the researcher's own folder (a CNN trained in a plain loop, a lightly-style module):
`dimcollapse analyze --model ... --arch mycnn:CNN` run from that folder finds it, as `python -m` would,
with the installed `dimcollapse` command and no PYTHONPATH; a pickled model of that class loads too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

CNN = """
import torch
from torch import nn


class CNN(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(width, 5)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))
"""


def _command() -> str:
    found = shutil.which("dimcollapse", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("the dimcollapse console script is not installed beside this Python")
    return found


def test_a_class_in_the_current_folder_needs_no_pythonpath(tmp_path: Path) -> None:
    (tmp_path / "mycnn.py").write_text(CNN)
    sys.path.insert(0, str(tmp_path))
    try:
        import mycnn

        torch.manual_seed(0)
        model = mycnn.CNN().eval()
        torch.save(model.state_dict(), tmp_path / "cnn.pt")
        torch.save(model, tmp_path / "whole.pt")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mycnn", None)
    x = torch.randn(30, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.save(x, tmp_path / "x.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    common = ["--data", "x.pt", "--no-figures", "--k", "5"]
    for out, argv in (("sd", ["--model", "cnn.pt", "--arch", "mycnn:CNN"]),
                      ("whole", ["--model", "whole.pt", "--trust-pickle"])):  # fmt: skip
        proc = subprocess.run(
            [_command(), "analyze", *argv, *common, "--out", out],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        m = json.loads((tmp_path / out / "metrics.json").read_text())
        with torch.no_grad():
            feats = model.features(x).flatten(1).double().numpy()
        eig = np.clip(np.linalg.eigvalsh(np.cov(feats.T, bias=True)), 0, None)
        p = eig[eig > 0] / eig.sum()
        # the head fc is named and its input, the 8-d features, analysed
        assert m["model"]["classifier_head"]["name"] == "fc" and m["d"] == 8
        assert m["erank"] == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-4)
