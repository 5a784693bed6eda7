"""``dimcollapse train`` as a process: it locks its --out (a second train there is refused in one line and
writes nothing; a dead holder's lock is taken over); a stop signal on any one process of a DDP run stops
every rank after the same step with a resumable last.ckpt and exits 128 + signal without hanging; the same
command then resumes by itself and ends with exactly the uninterrupted run's metrics."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dimcollapse.training.checkpoint import load_checkpoint
from dimcollapse.utils import lock
from train_process_helpers import (
    SMALL_YAML,
    progress,
    result_keys,
    start_train,
    wait_for_children,
    wait_for_step,
)

DDP = ("trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu")


def _cfg(tmp_path: Path) -> Path:
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL_YAML)
    return cfg


def _finish(cfg: Path, out: Path, err: Path, *overrides: str) -> dict:
    proc = start_train(cfg, out, err, *overrides)
    assert proc.wait(timeout=600) == 0, err.read_text()[-2000:]
    return dict(json.loads((out / "metrics.json").read_text()))


def test_a_second_train_on_a_locked_out_is_refused_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    cfg, out = _cfg(tmp_path), tmp_path / "run"
    first = start_train(cfg, out, tmp_path / "e1", "optim.max_steps=100000")
    try:
        wait_for_step(out, 1, first)
        second = start_train(cfg, out, tmp_path / "e2", "trainer.seed=1")  # would write seed: 1
        assert second.wait(timeout=300) == 2
        err = (tmp_path / "e2").read_text()
        assert err.count("\n") == 1 and err.startswith(
            f"error: run folder '{out}' is in use by process {first.pid}"
        )
        assert "seed: 0" in (out / "config.yaml").read_text()
        assert progress(out)["pid"] == first.pid
        assert not [p for p in out.rglob(f"*.{second.pid}.*")]  # not even a temporary file
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=300) == 143
    assert not (out / ".train.lock").exists()  # released on the way out


def test_a_dead_holders_lock_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    out.mkdir()
    holder = {"pid": dead.pid, "host": os.uname().nodename, "started": "x"}
    (out / ".train.lock").write_text(json.dumps(holder))
    cfg = _cfg(tmp_path)
    metrics = _finish(cfg, out, tmp_path / "err", "optim.max_steps=2")
    assert metrics["steps"] == 2 and not (out / ".train.lock").exists()
    assert "removing stale lock" in (tmp_path / "err").read_text()


def test_a_requeued_jobs_earlier_life_holds_a_stale_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    earlier = {"pid": 1, "host": "another-node", "started": "x", "slurm_job_id": "77", "restart_count": 0}
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert lock.is_stale(earlier)
    assert not lock.is_stale({**earlier, "restart_count": 1})  # the same life: alive elsewhere
    assert not lock.is_stale({**earlier, "slurm_job_id": "78"})  # another job on another host


def _stopped_at(err: str) -> tuple[int, int]:
    """The steps rank 0 and rank 1 report they stopped after."""
    m0 = re.search(r"^error: training interrupted by SIGTERM at step (\d+) \(all 2 ranks", err, re.M)
    m1 = re.search(r"^rank 1 stopped at step (\d+) ", err, re.M)
    assert m0 and m1, err[-3000:]
    return int(m0.group(1)), int(m1.group(1))


@pytest.mark.ddp
@pytest.mark.timeout(900)
@pytest.mark.parametrize("target", ["rank 1", "launcher"])
def test_ddp_stop_signal_to_one_process_stops_both_ranks_after_the_same_step(
    tmp_path: Path, target: str
) -> None:
    cfg, out, err = _cfg(tmp_path), tmp_path / "run", tmp_path / "err"
    proc = start_train(cfg, out, err, *DDP, "optim.max_steps=100000")
    wait_for_step(out, 3, proc)
    rank1 = wait_for_children(proc.pid, 1)[0]
    os.kill(rank1 if target == "rank 1" else proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=300) == 143  # no hang: rank 0 does not wait for a rank that went on
    step0, step1 = _stopped_at(err.read_text())
    assert step0 == step1 >= 3
    assert load_checkpoint(out / "checkpoints" / "last.ckpt")["global_step"] == step0
    assert progress(out)["state"] == "interrupted" and progress(out)["step"] == step0
    assert not (out / ".train.lock").exists() and not (out / "metrics.json").exists()


@pytest.mark.ddp
@pytest.mark.timeout(900)
def test_ddp_run_stopped_mid_training_resumes_by_itself_to_the_uninterrupted_metrics(tmp_path: Path) -> None:
    cfg, steps = _cfg(tmp_path), "optim.max_steps=40"
    full = _finish(cfg, tmp_path / "full", tmp_path / "e0", *DDP, steps)
    out, err = tmp_path / "run", tmp_path / "e1"
    proc = start_train(cfg, out, err, *DDP, steps)
    wait_for_step(out, 3, proc)
    os.kill(wait_for_children(proc.pid, 1)[0], signal.SIGTERM)
    assert proc.wait(timeout=300) == 143
    stopped, _ = _stopped_at(err.read_text())
    assert stopped < 40
    resumed = _finish(cfg, out, tmp_path / "e2", *DDP, steps)  # the same command, no flag
    assert f"resuming the interrupted run in {out} from step {stopped} of 40" in (tmp_path / "e2").read_text()
    assert resumed["resumed"] and resumed["world_size"] == 2
    assert result_keys(resumed) == result_keys(full)  # exactly equal, every result key


def test_run_stopped_by_sigusr1_resumes_by_itself_to_the_uninterrupted_metrics(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    full = _finish(cfg, tmp_path / "full", tmp_path / "e0")
    out, err = tmp_path / "run", tmp_path / "e1"
    proc = start_train(cfg, out, err)
    wait_for_step(out, 5, proc)
    proc.send_signal(signal.SIGUSR1)  # SLURM's warning signal (--signal=USR1@<s>)
    assert proc.wait(timeout=300) == 128 + signal.SIGUSR1
    text = err.read_text()
    m = re.search(r"^error: training interrupted by SIGUSR1 at step (\d+);", text, re.M)
    assert m and 5 <= int(m.group(1)) < 60, text[-2000:]
    resumed = _finish(cfg, out, tmp_path / "e2")
    lines = [ln for ln in (tmp_path / "e2").read_text().splitlines() if ln.startswith("resuming")]
    assert lines == [
        f"resuming the interrupted run in {out} from step {m.group(1)} of 60 ({out}/checkpoints/last.ckpt)"
    ]
    assert result_keys(resumed) == result_keys(full)
    assert progress(out)["state"] == "done" and progress(out)["step"] == 60
