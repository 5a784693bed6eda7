"""NaN/Inf stop: parameters, buffers (BatchNorm running statistics) and optimizer state are checked before
every save; the last finite checkpoint is never replaced; the message names the step, the checkpoint
and a fix that works (``--resume --override-lr``); the collapse monitor's NaN names the step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from dimcollapse.errors import DivergedError
from dimcollapse.training.checkpoint import load_checkpoint, nonfinite_state
from dimcollapse.training.config import load_config
from dimcollapse.training.run import train
from robust_helpers import TINY


class Poison(L.Callback):
    """After optimizer step ``at``, put Inf into one BatchNorm running_var or one optimizer momentum."""

    def __init__(self, at: int, where: str) -> None:
        self.at, self.where = at, where

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if trainer.global_step != self.at:
            return
        if self.where == "buffer":
            bn = next(m for m in pl_module.modules() if isinstance(m, torch.nn.BatchNorm2d))
            bn.running_var[0] = float("inf")
        else:
            state = trainer.optimizers[0].state
            buf = next(s["momentum_buffer"] for s in state.values() if "momentum_buffer" in s)
            buf.view(-1)[0] = float("nan")


@pytest.mark.parametrize("where", ["buffer", "optimizer"])
def test_nonfinite_buffer_or_optimizer_state_is_never_saved(tmp_path: Path, where: str) -> None:
    # the loss stays finite (BatchNorm trains on batch statistics; a NaN momentum hits the next step's
    # weights): only the state check catches it, at the step it happens
    cfg = load_config(None, [*TINY, "optim.max_steps=8", "trainer.checkpoint_every=1"])
    with pytest.raises(DivergedError) as err:
        train(cfg, tmp_path, extra_callbacks=[Poison(at=3, where=where)])
    msg = str(err.value)
    assert "non-finite at step 3" in msg and ("running_var" in msg or "optimizer 0 state" in msg)
    assert "last good checkpoint (step 2)" in msg and str(tmp_path / "checkpoints" / "last.ckpt") in msg
    assert "--resume --override-lr 0.03" in msg  # a tenth of optim.lr = 0.3
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 2
    tensors = list(ckpt["state_dict"].values())
    for st in ckpt["optimizer_states"]:
        for s in st["state"].values():
            tensors.extend(v for v in s.values() if isinstance(v, torch.Tensor))
    assert all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def test_nonfinite_state_names_parameters_buffers_and_optimizer() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(4, 2)).sum().backward()
    opt.step()
    assert nonfinite_state(net, [opt]) == []
    net[1].running_mean[1] = float("nan")
    opt.state[net[0].weight]["momentum_buffer"][0, 0] = float("inf")
    with torch.no_grad():
        net[0].bias[0] = float("-inf")
    assert nonfinite_state(net, [opt]) == ["parameter 0.bias", "buffer 1.running_mean", "optimizer 0 state"]


def test_monitor_nan_embedding_names_the_step() -> None:
    from dimcollapse.training.callbacks import CollapseMonitor

    class NanModule(torch.nn.Module):
        device = torch.device("cpu")

        def encode_eval(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.full((x.shape[0], 4), float("nan")), torch.zeros(x.shape[0], 3)

    monitor = CollapseMonitor(torch.zeros(8, 1, 4, 4, dtype=torch.uint8), every_n_steps=1)
    with pytest.raises(DivergedError, match="NaN/Inf at step 7") as err:
        monitor.measure(NanModule(), 7)
    assert err.value.step == 7 and err.value.what == "the probe embeddings"


def test_monitor_divergence_message_gives_step_checkpoint_and_fix(tmp_path: Path) -> None:
    from dimcollapse.training.checkpoint import FiniteModelCheckpoint
    from dimcollapse.training.run_results import diverged_error as _diverged

    cfg = load_config(None, [*TINY, "optim.lr=0.5"])
    ckpt = FiniteModelCheckpoint(dirpath=str(tmp_path / "checkpoints"))
    err = _diverged(DivergedError("x", 12, "the probe embeddings"), cfg.optim.lr, ckpt, tmp_path)
    assert "probe embeddings became non-finite at step 12" in str(err) and "No checkpoint" in str(err)
    assert "optim.lr=0.05" in str(err)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    ckpt.last_good_step = 10
    err = _diverged(DivergedError("x", 12, "the probe embeddings"), cfg.optim.lr, ckpt, tmp_path)
    assert "last good checkpoint (step 10)" in str(err) and "--resume --override-lr 0.05" in str(err)
