"""Studies through the local executor: each run its own `dimcollapse train` process (the tiny study of
conftest_study is trained that way), the same numbers as training in-process, N runs at once, a DDP run
(2 gloo ranks) inside a study, `study status` and `--retry-failed`, and bad executor input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dimcollapse.launch.local import cpu_count
from launch_helpers import DDP, assert_same_results, cli, metrics, rows, write_study
from study_helpers import BASE_YAML, RUN_IDS, STUDY_YAML, TinyStudy, copy_study

pytest_plugins = ["conftest_study"]


def test_each_run_is_its_own_process_with_the_in_process_numbers(
    tiny_study: TinyStudy, tmp_path: Path
) -> None:
    from dimcollapse.study.grid import load_study
    from dimcollapse.study.runner import run_study
    from dimcollapse.training.run import train

    ledger = json.loads((tiny_study.folder / "launch" / "jobs.json").read_text())
    assert sorted(ledger) == sorted(RUN_IDS)
    pids = {e["job_id"] for e in ledger.values()}
    assert len(pids) == 3 and all(p.startswith("local-pid-") for p in pids)  # three processes, none this one
    assert all(e["executor"] == "local" and e["state"] == "done" for e in ledger.values())
    for run_id in RUN_IDS:
        log = (tiny_study.folder / "launch" / "logs" / f"{run_id}.log").read_text()
        assert log.startswith("$ dimcollapse train ") and "wrote " in log
    # the same run trained in this process (the pre-launcher way) gives the same metrics
    study = load_study(tiny_study.study_file)
    study.runs = [r for r in study.runs if r.run_id == "simclr_none"]
    run_study(study, tmp_path / "inproc", train_fn=lambda c, o, r: train(c, o, resume=r))
    inproc = rows(tmp_path / "inproc")["simclr_none"]
    assert_same_results(inproc, rows(tiny_study.folder)["simclr_none"], "in-process vs subprocess")


def test_two_runs_at_once_give_the_same_results(
    tiny_study: TinyStudy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "spec" / "study.yaml"
    two = "".join(line + "\n" for line in STUDY_YAML.splitlines() if "simclr_so" not in line)
    write_study(study.parent, two, BASE_YAML)  # the tiny study without its third run
    status, _, err = cli(["study", str(study), "--out", str(tmp_path / "o"), "--parallel", "2",
                          "--no-report", "--no-baselines"], capsys)  # fmt: skip
    assert status == 0, err
    ledger = json.loads((tmp_path / "o" / "launch" / "jobs.json").read_text())
    assert sorted(ledger) == ["simclr_mlp", "simclr_none"]
    # both started before either ended, each with half of the cores' threads
    starts, ends = [], []
    for run_id in ledger:
        head = (tmp_path / "o" / "launch" / "logs" / f"{run_id}.log").read_text().splitlines()[1].split()
        starts.append(float(head[2]))
        ends.append((tmp_path / "o" / "runs" / run_id / "metrics.json").stat().st_mtime)
        assert head[4] == f"OMP_NUM_THREADS={max(1, cpu_count() // 2)}"
    assert max(starts) < min(ends)
    ref = rows(tiny_study.folder)
    for run_id, row in rows(tmp_path / "o").items():
        assert_same_results(row, ref[run_id], f"--parallel 2 vs local, {run_id}")


@pytest.mark.ddp
@pytest.mark.timeout(600)
def test_a_ddp_run_inside_a_study_completes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = write_study(tmp_path / "spec", DDP)
    status, _, err = cli(
        ["study", str(study), "--out", str(tmp_path / "o"), "--no-report", "--no-baselines"], capsys
    )
    assert status == 0, err
    log = (tmp_path / "o" / "launch" / "logs" / "ddp2.log").read_text()
    assert "GLOBAL_RANK: 1" in log and "distributed_backend=gloo" in log  # two ranks trained
    m = metrics(tmp_path / "o" / "runs" / "ddp2")
    assert m["steps"] > 0 and rows(tmp_path / "o")["ddp2"]["status"] == "done"
    assert m["eval_processes"] == 2  # the final evaluation ran on both ranks, each on its share


def test_status_and_retry_failed(
    tiny_study: TinyStudy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy_study(tiny_study, tmp_path / "copy")
    status, out, _ = cli(["study", "status", str(folder)], capsys)
    assert status == 0 and "3 done, 0 running, 0 queued, 0 requeued, 0 failed" in " ".join(out.split())
    # a run that died without its metrics (the study process is gone): failed, and retried alone
    ledger = json.loads((folder / "launch" / "jobs.json").read_text())
    ledger["simclr_so"]["state"] = "failed"
    (folder / "launch" / "jobs.json").write_text(json.dumps(ledger))
    before = {
        r: (folder / "runs" / r / "metrics.json").stat().st_mtime_ns for r in ("simclr_mlp", "simclr_none")
    }
    (folder / "runs" / "simclr_so" / "metrics.json").unlink()
    status, out, _ = cli(["study", "status", str(folder)], capsys)
    assert status == 0 and "2 done, 0 running, 0 queued, 0 requeued, 1 failed" in " ".join(out.split())
    status, out, err = cli(["study", "status", str(folder), "--retry-failed"], capsys)
    assert status == 0, err
    assert "retrying 1 failed run(s): simclr_so" in err
    assert (folder / "runs" / "simclr_so" / "metrics.json").is_file()
    assert before == {r: (folder / "runs" / r / "metrics.json").stat().st_mtime_ns for r in before}
    status, out, _ = cli(["study", "status", str(folder)], capsys)
    assert "3 done" in " ".join(out.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "kubernetes"], "unknown executor 'kubernetes'. Valid executors: local, slurm."),
        (["--parallel", "0"], "executor.parallel must be a whole number >= 1, got 0."),
        (["executor.partitoin=gpu"], "unknown executor key(s) ['partitoin']"),
        (["executor.time=soon", "--executor", "slurm"], "executor.time = 'soon' is not a time limit"),
        (["trainer.devices=auto"], "does not say how many devices the run needs"),
    ],
)
def test_bad_executor_input_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    study = write_study(tmp_path / "spec", "name: t\nbase: base.yaml\nruns: [{name: a}]\n")
    status, _, err = cli(["study", str(study), "--out", str(tmp_path / "o"), *args], capsys)
    assert status == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "o").exists()


def test_slurm_without_sbatch_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    study = write_study(tmp_path / "spec", "name: t\nbase: base.yaml\nruns: [{name: a}]\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sbatch, no squeue on the PATH
    status, _, err = cli(["study", str(study), "--out", str(tmp_path / "o"), "--executor", "slurm"], capsys)
    assert status == 2 and err.count("\n") == 1 and "needs SLURM's sbatch and squeue" in err
    assert not (tmp_path / "o").exists()
