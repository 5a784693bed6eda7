"""Issue 22's `analyze --model` cases: each bad input is one `error:` line naming the problem, exit 2, and
nothing written; the wrong-result cases (--limit 0 / -5, --labels, --key) are refused or honoured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dimcollapse.cli.main import run

USER_CODE = """
import lightning as L
import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self, width=12, out=6):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(10, width), nn.ReLU(), nn.Linear(width, width))
        self.projection_head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, out))

    def forward(self, x):
        return self.projection_head(self.backbone(x))


class Lit(L.LightningModule):
    def __init__(self, width=12, command="touch PWNED"):
        super().__init__()
        self.save_hyperparameters()
        self.enc = Encoder(width)

    def forward(self, x):
        return self.enc(x)


class NotAModule:
    def __init__(self, **kw):
        pass


class TinyViT(nn.Module):
    def __init__(self, image_size=32, patch=8, dim=16):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.pos = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2, dim))

    def forward(self, x):
        return (self.patch(x).flatten(2).transpose(1, 2) + self.pos).mean(1)
"""


@pytest.fixture()
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "usercode.py").write_text(textwrap.dedent(USER_CODE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("usercode", None)
    import usercode

    torch.manual_seed(0)
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096).replace(b"PK", b"pk"))
    with zipfile.ZipFile(tmp_path / "broken_ts.pt", "w") as z:
        z.writestr("m/code/__torch__.py", "garbage")
        z.writestr("m/constants.pkl", b"xx")
    torch.save(usercode.Encoder().state_dict(), tmp_path / "sd.pt")
    raw = (tmp_path / "sd.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(raw[: len(raw) // 2])
    lit = usercode.Lit()
    ckpt = {"state_dict": lit.state_dict(), "hyper_parameters": dict(lit.hparams), "global_step": 1}
    torch.save(ckpt, tmp_path / "lit.ckpt")
    nan = usercode.Encoder()
    with torch.no_grad():
        nan.backbone[0].weight.fill_(float("nan"))
    torch.save(nan.state_dict(), tmp_path / "nan.pt")
    torch.save(usercode.TinyViT().state_dict(), tmp_path / "vit.pt")
    torch.save(torch.randn(50, 10), tmp_path / "x.pt")
    torch.save(torch.randn(0, 10), tmp_path / "x0.pt")
    torch.save(torch.randint(0, 255, (4, 3, 64, 64), dtype=torch.uint8), tmp_path / "img64.pt")
    np.savez(tmp_path / "xs.npz", a=np.random.default_rng(1).normal(size=(50, 10)), b=np.ones((50, 3)))
    np.save(tmp_path / "labels50.npy", np.arange(50) % 5)
    (tmp_path / "a_folder").mkdir()
    os.mkfifo(tmp_path / "fifo.npy")
    return tmp_path


def _argv(model: str, *extra: str, data: str = "x.pt") -> list[str]:
    return ["analyze", "--model", model, "--data", data, "--no-figures", "--k", "5", "--out", "out", *extra]


ENC = ("--arch", "usercode:Encoder")
CASES = {
    "empty file": (_argv("empty.pt", *ENC), "is empty (0 bytes)"),
    "random bytes with --trust-pickle": (_argv("random.pt", "--trust-pickle"), "is not a torch file"),
    "random bytes": (_argv("random.pt"), "is not a torch file"),
    "broken TorchScript zip": (_argv("broken_ts.pt"), "looks like TorchScript"),
    "non-module --arch on a Lightning ckpt": (
        _argv("lit.ckpt", "--arch", "usercode:NotAModule"),
        "not a torch.nn",
    ),
    "string where a number goes": (_argv("sd.pt", *ENC, "--arch-kwargs", "{width: abc}"), "--arch-kwargs"),
    "NaN weights": (_argv("nan.pt", *ENC), "NaN/Inf (backbone.0.weight"),
    "--embed a class": (_argv("sd.pt", *ENC, "--embed", "__class__"), "not a sub-module"),
    "--embed a tensor": (_argv("sd.pt", *ENC, "--embed", "backbone.0.weight"), "not a sub-module"),
    "ViT fed another size": (_argv("vit.pt", "--arch", "usercode:TinyViT", data="img64.pt"), "--image-size"),
    "--embed at a head": (_argv("sd.pt", *ENC, "--embed", "projection_head"), "name the backbone"),
    "--limit 0": (_argv("sd.pt", *ENC, "--limit", "0"), "--limit must be a positive integer"),
    "--limit -5": (_argv("sd.pt", *ENC, "--limit", "-5"), "--limit must be a positive integer"),
    "--labels of another length": (
        _argv("sd.pt", *ENC, "--labels", "labels50.npy", "--limit", "40"),
        "40 rows",
    ),
    "a FIFO named .npy": (_argv("sd.pt", *ENC, data="fifo.npy"), "not a regular file"),
    "truncated checkpoint": (_argv("trunc.pt", *ENC), "'trunc.pt' is truncated"),
    "a folder as the model": (_argv("a_folder"), "folder without config.json"),
    "0 input rows": (_argv("sd.pt", *ENC, data="x0.pt"), "gave 0 input rows"),
    "--arch os:system": (_argv("lit.ckpt", "--arch", "os:system"), "not a class"),
    "--arch os:system on a state_dict": (_argv("sd.pt", "--arch", "os:system"), "not a model class"),
    "--map umapp": (_argv("sd.pt", *ENC, "--map", "umapp"), "unknown --map 'umapp'"),
    "--pool bogus": (_argv("sd.pt", *ENC, "--pool", "bogus"), "unknown --pool"),
    "--output absent": (_argv("sd.pt", *ENC, "--output", "logits"), "--output 'logits'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_line_exit_2_nothing_written(files: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv, needle = CASES[case]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and "internal error" not in err, err
    assert needle in err, err
    assert (
        "--trust-pickle" not in err or case == "pickled"
    )  # a corrupt file is never pointed at the unsafe flag
    assert not (files / "out").exists()
    assert not (files / "PWNED").exists()  # a file's hyper-parameters never reach a shell


def test_pickled_model_whose_module_is_not_importable(files: Path, tmp_path: Path) -> None:
    import usercode

    torch.save(usercode.Encoder(), files / "pickled.pt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "from dimcollapse.cli.main import run; import sys; sys.exit(run(sys.argv[1:]))"
    argv = _argv(str(files / "pickled.pt"), "--trust-pickle", data=str(files / "x.pt"))
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr
    assert "module 'usercode'" in proc.stderr and "PYTHONPATH" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (elsewhere / "out").exists()


def test_lightning_hyper_parameters_filtered_to_the_constructor(files: Path) -> None:
    ckpt = torch.load(files / "lit.ckpt", weights_only=True)
    ckpt["hyper_parameters"]["injected_by_a_callback"] = 3
    torch.save(ckpt, files / "lit2.ckpt")
    assert run(_argv("lit2.ckpt", "--arch", "usercode:Lit")) == 0
    m = json.loads((files / "out" / "metrics.json").read_text())
    assert m["model"]["dropped_hyper_parameters"] == ["injected_by_a_callback"]


def test_labels_key_and_limit_are_honoured(files: Path) -> None:
    assert run(_argv("sd.pt", *ENC, "--labels", "labels50.npy", "--key", "a", data="xs.npz")) == 0
    m = json.loads((files / "out" / "metrics.json").read_text())
    assert m["n"] == 50 and m["n_classes"] == 5  # the user's labels, the array named by --key
    assert run(_argv("sd.pt", *ENC, "--limit", "7", "--k", "3")) == 0
    m = json.loads((files / "out" / "metrics.json").read_text())
    assert m["n"] == 7 and any("N <= D" in w for w in m["warnings"]) is (m["d"] >= 7)


def test_options_are_checked_before_the_model_is_read(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a bad option is reported even though the model file is garbage: it is checked first
    assert run(_argv("random.pt", "--map", "umapp")) == 2
    assert "umapp" in capsys.readouterr().err


def test_embeddings_files_options_checked_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "z.npy").write_bytes(b"not an npy file")  # would be refused as corrupt if it were read first
    assert run(["analyze", str(tmp_path / "z.npy"), "--map", "umapp", "--out", str(tmp_path / "out")]) == 2
    assert "umapp" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_image_folder_is_decoded_at_the_model_size_and_limited_before_decoding(tmp_path: Path) -> None:
    from PIL import Image

    from dimcollapse.analysis.inputs import load_inputs

    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(
            tmp_path / "imgs" / "a" / f"{i}.png"
        )
    (tmp_path / "imgs" / "b" / "broken.png").write_bytes(
        b"not a png"
    )  # sorted last: never decoded with --limit
    inputs = load_inputs(str(tmp_path / "imgs"), limit=4, decode_size=16)
    batches = list(inputs.batches(batch_size=3))
    assert [tuple(b.shape) for b in batches] == [(3, 3, 16, 16), (1, 3, 16, 16)] and inputs.n == 4
    assert inputs.labels is not None and inputs.labels.tolist() == [0, 0, 0, 0]
