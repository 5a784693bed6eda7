"""Study input that must be refused before anything runs (issue 22): huge grids, alias bombs, long run
names, a non-boolean `baselines`; a study whose runs all fail exits non-zero; the lock file is never seen
empty by a reader."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launch_helpers import cli, write_study


def _refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], study_text: str, message: str) -> float:
    study = write_study(tmp_path / "spec", study_text)
    t0 = time.perf_counter()
    status, _, err = cli(["study", str(study), "--out", str(tmp_path / "o")], capsys)
    took = time.perf_counter() - t0
    assert status == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "o").exists()
    return took


def test_a_million_run_grid_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = ", ".join(str(i) for i in range(1000))
    text = f"name: big\nbase: base.yaml\ngrid: {{trainer.seed: [{values}], optim.lr: [{values}]}}\n"
    took = _refused(tmp_path, capsys, text, "expands to 1,000,000 runs, more than the limit of 5,000")
    assert took < 30  # refused from the sizes, never by building the grid's configs


def test_a_yaml_alias_bomb_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = "name: bomb\nbase: base.yaml\ndescription:\n" + "".join(f"  {line}\n" for line in levels)
    _refused(tmp_path, capsys, text, "through YAML aliases (an alias bomb?)")


def test_a_300_character_run_name_is_refused_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "r" * 300
    _refused(tmp_path, capsys, f"name: t\nbase: base.yaml\nruns: [{{name: ok}}, {{name: {name}}}]\n",
             "is 300 characters long; folder names are limited to 200")  # fmt: skip


def test_baselines_must_be_a_boolean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _refused(
        tmp_path, capsys, "name: t\nbase: base.yaml\nbaselines: abc\n", "'baselines' must be true or false"
    )


def test_a_study_whose_runs_all_fail_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # k-NN over more neighbours than the test split has: every run fails in its own process, before training
    study = write_study(tmp_path / "spec", "name: t\nbase: base.yaml\nset: {eval.lid_k: 100000}\n"
                        "runs: [{name: a}, {name: b}]\n")  # fmt: skip
    status, _, err = cli(
        ["study", str(study), "--out", str(tmp_path / "o"), "--no-report", "--no-baselines"], capsys
    )
    assert status == 1 and err.splitlines()[-1].startswith("error: every run of study 't' failed (2)"), err
    rows = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [r["status"].split(":")[0] for r in rows] == ["failed", "failed"]
    assert "lid_k" in rows[0]["status"]  # the run's own one-line error


def test_a_reader_never_sees_an_empty_lock(tmp_path: Path) -> None:
    lock, stop = tmp_path / ".study.lock", tmp_path / "stop"
    churn = (  # take and release the lock until told to stop (at most 60 s)
        "import pathlib, time\nfrom dimcollapse.utils.lock import acquire, release\n"
        f"p, stop = pathlib.Path({str(lock)!r}), pathlib.Path({str(stop)!r})\n"
        "end = time.monotonic() + 60\n"
        "while not stop.exists() and time.monotonic() < end:\n    acquire(p, 'study folder'); release(p)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", churn])
    seen = empty = 0
    deadline = time.monotonic() + 45
    # read until 200 reads found the lock held (however slowly the host runs the churning process)
    while seen < 200 and proc.poll() is None and time.monotonic() < deadline:
        try:
            text = lock.read_text()
        except FileNotFoundError:
            continue
        seen += 1
        try:
            holder = json.loads(text)
        except ValueError:
            holder = None
        if not isinstance(holder, dict) or "pid" not in holder:
            empty += 1
    stop.touch()
    proc.wait(timeout=60)
    assert proc.returncode == 0
    assert seen > 0 and empty == 0, f"{empty} of {seen} reads found a lock without its holder"
