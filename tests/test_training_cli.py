"""`dimcollapse train` / `dimcollapse eval`: exit codes, files written, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dimcollapse.cli.main import run

RECIPE = """
name: tiny
data: {name: synthetic, kwargs: {n: 96, image_size: 8, num_classes: 3}, batch_size: 16}
model:
  backbone_kwargs: {widths: [4, 8], blocks: [1, 1]}
  projector_kwargs: {hidden_dim: 16, out_dim: 8}
optim: {max_steps: 2}
trainer: {progress_bar: false, tensorboard: false}
monitor: {every_n_steps: 1, probe_size: 16, lid_k: 4}
eval: {knn_k: [5], linear_probe_epochs: 5}
"""


def test_cli_train_then_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "run"
    assert run(["train", str(recipe), "optim.lr=0.05", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and 0.0 <= metrics["knn_k5_top1"] <= 1.0
    assert "lr: 0.05" in (out / "config.yaml").read_text()
    assert len(json.loads((out / "monitor.json").read_text())["history"]) == 2
    assert "knn_k5_top1" not in capsys.readouterr().err
    ckpt = out / "checkpoints" / "final.ckpt"
    assert run(["eval", str(ckpt), "--out", str(tmp_path / "ev")]) == 0
    again = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for key in (
        "knn_k5_top1",
        "linear_top1",
        "erank_r",
        "rankme_z",
    ):  # same weights, same data -> same numbers
        assert again[key] == pytest.approx(metrics[key], rel=1e-6), key
    assert again["step"] == 2
    assert run(["train", str(recipe), "--out", str(out)]) == 2  # refuses to overwrite a run
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optim.lrr=1"], "unknown config key 'optim.lrr'"),
        (["data.batch_size=200"], "larger than the"),
        (["data.name=nope"], "unknown dataset 'nope'"),
    ],
)
def test_cli_train_bad_input_exit_2_with_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)
    assert run(["train", str(recipe), *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split())
    assert "Traceback" not in err


def test_cli_eval_missing_or_corrupt_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["eval", str(tmp_path / "none.ckpt")]) == 2
    assert "does not exist" in " ".join(capsys.readouterr().err.split())
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert run(["eval", str(bad)]) == 2
    assert "corrupt" in " ".join(capsys.readouterr().err.split())
    assert run(["train", str(tmp_path / "missing.yaml")]) == 2
