"""--resume continues the checkpoint's own config: a run-changing override is refused in one line and
rewrites nothing; --override-lr really changes the lr (the restored schedule is rescaled) and is
recorded; SIGTERM / SIGINT / SIGUSR1 save a resumable checkpoint and exit 143 / 130 / 138, and the same
command then resumes by itself; stale temp files go."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import pytest

from dimcollapse.errors import ConfigError, RunInterrupted
from dimcollapse.training.checkpoint import load_checkpoint
from dimcollapse.training.config import load_config
from dimcollapse.training.optim import warmup_cosine
from dimcollapse.training.run import prepare, train
from robust_helpers import TINY


class Kill(L.Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("simulated kill")


class RecordLr(L.Callback):
    def __init__(self) -> None:
        self.lr: dict[int, float] = {}

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.lr[int(trainer.global_step)] = float(trainer.optimizers[0].param_groups[0]["lr"])


def _killed_run(out: Path) -> Any:
    cfg = load_config(None, [*TINY, "optim.max_steps=6", "trainer.checkpoint_every=2"])
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(cfg, out, extra_callbacks=[Kill(at=3)])
    assert load_checkpoint(out / "checkpoints" / "last.ckpt")["global_step"] == 2
    return cfg


def test_resume_refuses_run_changing_overrides_and_rewrites_nothing(tmp_path: Path) -> None:
    _killed_run(tmp_path)
    saved = (tmp_path / "config.yaml").read_bytes()
    for override, key in (("optim.lr=0.1", "optim.lr 0.3 -> 0.1"), ("trainer.seed=1", "trainer.seed 0 -> 1"),
                          ("optim.warmup_epochs=0", "optim.warmup_epochs 1.0 -> 0")):  # fmt: skip
        cfg = load_config(None, [*TINY, "optim.max_steps=6", "trainer.checkpoint_every=2", override])
        with pytest.raises(ConfigError, match="--resume") as err:
            train(cfg, tmp_path, resume=True)
        assert key in str(err.value) and "--override-lr" in str(err.value)
        assert (tmp_path / "config.yaml").read_bytes() == saved
    with pytest.raises(ConfigError, match="--override-lr applies to --resume only"):
        prepare(load_config(None, TINY), tmp_path / "fresh", resume=False, override_lr=0.1)


def test_override_lr_rescales_the_restored_schedule_and_is_recorded(tmp_path: Path) -> None:
    cfg = _killed_run(tmp_path)
    dead = tmp_path / "checkpoints" / ".last.ckpt.999999999.abcd1234.tmp"  # left by a killed writer
    live = tmp_path / f".metrics.json.{os.getpid()}.efgh5678.tmp"  # a writer that still runs
    dead.write_bytes(b"partial")
    live.write_bytes(b"partial")
    rec = RecordLr()
    metrics = train(cfg, tmp_path, resume=True, override_lr=0.03, extra_callbacks=[rec])
    assert not dead.exists() and live.exists()
    assert metrics["lr_override"] == {"from": 0.3, "to": 0.03, "at_step": 2}
    assert "lr: 0.03" in (tmp_path / "config.yaml").read_text()
    total, warmup = 6, 6  # 144 pool images / 16 = 9 steps per epoch; warm-up 1 epoch capped at the run
    assert sorted(rec.lr) == [2, 3, 4, 5]
    for step, lr in rec.lr.items():
        assert lr == pytest.approx(0.03 * warmup_cosine(step, warmup, total), rel=1e-9), step
    final = load_checkpoint(tmp_path / "checkpoints" / "final.ckpt")
    assert final["hyper_parameters"]["config"]["optim"]["lr"] == 0.03  # a later resume keeps the new lr


class SendSignal(L.Callback):
    def __init__(self, at: int, signum: int) -> None:
        self.at, self.signum = at, signum

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.at:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGUSR1, 138)]
)
def test_signal_saves_a_resumable_checkpoint_and_exits_128_plus_signal(
    tmp_path: Path, signum: int, code: int
) -> None:
    cfg = load_config(None, [*TINY, "optim.max_steps=50", "trainer.checkpoint_every=100"])
    before = signal.getsignal(signum)
    with pytest.raises(RunInterrupted) as err:
        train(cfg, tmp_path, extra_callbacks=[SendSignal(at=3, signum=signum)])
    assert signal.getsignal(signum) is before  # the previous handler is back
    assert err.value.exit_code == code
    step = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"]
    assert step in (3, 4)  # the step that was running when the signal came, finished and saved
    msg = str(err.value)
    assert f"interrupted by {signal.Signals(signum).name} at step {step}" in msg
    assert "resumes from the checkpoint by itself" in msg
    again = prepare(cfg, tmp_path, resume=False)  # the same command resumes, without --resume
    assert again.mode.auto and again.previous is not None and again.start_step == step
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress["state"] == "interrupted" and progress["step"] == step and not progress["requeued"]


def test_cli_exit_status_of_an_interrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dimcollapse.training.run as run_mod
    from dimcollapse.cli.main import run

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise RunInterrupted("training interrupted by SIGTERM at step 7; ... rerun with --resume", 143)

    monkeypatch.setattr(run_mod, "train", interrupted)
    (tmp_path / "c.yaml").write_text("data: {name: synthetic}\n")
    assert run(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")]) == 143
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: training interrupted by SIGTERM")
