"""Studies: a lock file (pid, host) refuses a second process on the same folder and stale locks are
taken over; run and study names cannot leave their folders; a failed run (truncated checkpoint, any
error) is recorded and the study goes on; a garbage results.json is a one-line error."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.study.grid import load_study
from dimcollapse.study.results import load_results
from dimcollapse.study.runner import LOCK, run_study
from dimcollapse.training.config import RunConfig
from dimcollapse.utils.names import check_folder_name


def _study(tmp_path: Path, runs: str = "[{name: a}, {name: b}, {name: c}]") -> Path:
    (tmp_path / "base.yaml").write_text("data: {name: synthetic}\noptim: {epochs: 1}\n")
    f = tmp_path / "study.yaml"
    f.write_text(f"name: t\nbase: base.yaml\nruns: {runs}\n")
    return f


class Fake:
    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail or {}

    def __call__(self, cfg: RunConfig, out: Path, resume: bool) -> dict[str, Any]:
        self.calls.append(cfg.name)
        if cfg.name in self.fail:
            raise self.fail[cfg.name]
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps({"erank_r": 1.0}))
        return {"erank_r": 1.0}


def _lock(folder: Path, pid: int, host: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / LOCK
    p.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "x"}))
    return p


def test_second_process_is_refused_and_stale_lock_is_taken_over(tmp_path: Path) -> None:
    study = load_study(_study(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock(tmp_path / "out", holder.pid)
        fake = Fake()
        with pytest.raises(InputError, match=rf"in use by process {holder.pid} on host"):
            run_study(study, tmp_path / "out", train_fn=fake)
        assert fake.calls == [] and not (tmp_path / "out" / "runs").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and is taken over; the lock is released at the end
    res = run_study(study, tmp_path / "out", train_fn=fake)
    assert res.trained == ["a", "b", "c"] and not (tmp_path / "out" / LOCK).exists()
    other_host = _lock(tmp_path / "out2", holder.pid, host="another-host")
    with pytest.raises(InputError, match="another-host"):  # cannot be checked: never taken over
        run_study(study, tmp_path / "out2", train_fn=fake)
    assert other_host.exists()


def test_cli_refuses_a_locked_study_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dimcollapse.cli.main import run

    f = _study(tmp_path)
    _lock(tmp_path / "out", 1)  # pid 1 runs on every host
    assert run(["study", str(f), "--out", str(tmp_path / "out"), "--no-report", "--no-baselines"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: study folder") and "process 1" in err


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b", "../../escape", ""])
def test_names_cannot_leave_their_folder(name: str) -> None:
    with pytest.raises(ConfigError, match="cannot be used as a folder name"):
        check_folder_name(name, "study")
    assert check_folder_name("simclr_mlp__seed-0", "run") == "simclr_mlp__seed-0"


def test_run_named_dotdot_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    study = load_study(_study(tmp_path, "[{name: '..'}]"))
    with pytest.raises(ConfigError, match=r"study run name '\.\.'"):
        run_study(study, tmp_path / "out", train_fn=Fake())
    assert not (tmp_path / "out").exists()


def test_failed_runs_are_recorded_and_the_study_continues(tmp_path: Path) -> None:
    from dimcollapse.training.run import train

    study = load_study(_study(tmp_path))
    run_dir = tmp_path / "out" / "runs" / "b" / "checkpoints"
    run_dir.mkdir(parents=True)
    import torch

    torch.save({"state_dict": {"w": torch.zeros(1000)}}, run_dir / "last.ckpt")
    data = (run_dir / "last.ckpt").read_bytes()
    (run_dir / "last.ckpt").write_bytes(data[: len(data) // 2])  # killed while copying: truncated
    worker = ("Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
              'last):\n  File "w.py", line 1, in f\nRuntimeError: worker died')  # fmt: skip
    fake = Fake(fail={"c": RuntimeError(worker)})

    def train_fn(cfg: RunConfig, out: Path, resume: bool) -> dict[str, Any]:
        return train(cfg, out, resume=resume) if cfg.name == "b" else fake(cfg, out, resume)

    res = run_study(study, tmp_path / "out", train_fn=train_fn)
    assert res.trained == ["a"] and sorted(res.failed) == ["b", "c"]
    assert "truncated" in res.failed["b"] and res.failed["c"].startswith("RuntimeError: worker died")
    rows = {r["run_id"]: r for r in load_results(tmp_path / "out")}
    assert rows["a"]["status"] == "done" and rows["b"]["status"].startswith("failed: checkpoint")
    assert "\n" not in rows["c"]["status"]


def test_study_file_with_runs_of_the_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'runs' must be a list"):
        load_study(_study(tmp_path, "5"))


def test_garbage_results_json(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{garbage")
    with pytest.raises(InputError, match=r"results\.json' is not a study's results"):
        load_results(tmp_path)
    study = load_study(_study(tmp_path))
    run_study(study, tmp_path, train_fn=Fake())  # a rerun of the study rebuilds it
    assert [r["run_id"] for r in load_results(tmp_path)] == ["a", "b", "c"]
