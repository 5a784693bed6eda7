"""metrics.json records what a run trained: steps and epochs done and planned, and why it stopped."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from lightning.pytorch.callbacks import Timer

from dimcollapse.training.checkpoint import load_checkpoint
from dimcollapse.training.config import load_config
from dimcollapse.training.run import train
from dimcollapse.training.run_record import stop_reason, training_record
from dimcollapse.training.trainer_settings import TrainerSettings
from test_training_smoke import tiny


def test_completed_run_records_steps_and_epochs(tmp_path: Path) -> None:
    m = train(tiny("optim.max_steps=4"), tmp_path / "run")
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "final.ckpt")
    steps_per_epoch = ckpt["hyper_parameters"]["data_info"]["steps_per_epoch"]  # the data module's count
    assert ckpt["global_step"] == 4
    for rec in (m, on_disk):
        assert rec["steps"] == rec["planned_steps"] == 4
        assert rec["epochs"] == rec["planned_epochs"] == 4 / steps_per_epoch
        assert rec["stopped_early"] is False and rec["stop_reason"] == "completed"
        assert rec["eval_dataset"] == "synthetic" and rec["eval_knn_temperature"] == 0.07


def test_time_cap_is_recorded_as_an_early_stop(tmp_path: Path) -> None:
    """A 6 ms cap stops a 40-step run after its first step; the record says so."""
    m = train(tiny("optim.max_steps=40", "optim.max_time_minutes=0.0001"), tmp_path / "run")
    assert 1 <= m["steps"] < m["planned_steps"] == 40
    assert m["stopped_early"] is True
    assert m["stop_reason"] == "time cap (optim.max_time_minutes=0.0001)"


def test_stop_reason_without_a_timer() -> None:
    trainer = SimpleNamespace(callbacks=[], state=SimpleNamespace(status="finished"))
    assert stop_reason(trainer, 10, 10) == "completed"
    assert stop_reason(trainer, 3, 10) == "stopped early"
    trainer.state.status = "TrainerStatus.INTERRUPTED"
    assert stop_reason(trainer, 3, 10) == "interrupted"
    timer = Timer(duration={"seconds": 3600})  # never started: plenty of time left
    settings = TrainerSettings.from_config(load_config(None, ["optim.max_time_minutes=60"]), 10, 4)
    rec = training_record(SimpleNamespace(callbacks=[timer], state=None), 5, settings)
    assert rec["stop_reason"] == "stopped early" and rec["epochs"] == 1.25 and rec["planned_epochs"] == 2.5
