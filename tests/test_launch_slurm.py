"""Studies on a real SLURM (scripts/slurm-up.sh starts a one-node cluster as root): a 4-run job array
with the local executor's results, a DDP run as 2 tasks per node, a run requeued mid-training that
resumes by itself, a partition that does not exist; and --dry-run's sbatch scripts field by field."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dimcollapse.training.callbacks.progress import read_progress
from launch_helpers import DDP, GRID4, assert_same_results, cli, metrics, require_slurm, rows, write_study


def sbatch_fields(text: str) -> dict[str, str]:
    """``#SBATCH --key=value`` lines as a mapping (flags without a value map to '')."""
    fields = {}
    for line in text.splitlines():
        m = re.match(r"#SBATCH --([\w-]+)(?:=(.*))?$", line)
        if m:
            fields[m.group(1)] = (m.group(2) or "").strip("'")
    return fields


def test_dry_run_writes_sbatch_scripts_field_by_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = write_study(tmp_path / "spec", """\
name: dry
base: base.yaml
executor:
  name: slurm
  partition: gpu
  time: "1-02:30:00"
  account: ssl-lab
  qos: high
  constraint: a100
  array_parallelism: 2
  cpus_per_task: 8
  mem_gb: 64
  signal_delay_s: 300
  sbatch: {exclusive: true, mail-type: END}
  setup: ["module load cuda/12"]
runs:
  - {name: cpu2, set: {trainer.strategy: ddp, trainer.devices: 2}}
  - {name: gpu4, set: {trainer.accelerator: gpu, trainer.devices: 4}}
grid: {trainer.seed: [0, 1, 2]}
""")  # fmt: skip
    status, _, err = cli(
        ["study", str(study), "--out", str(tmp_path / "o"), "--dry-run", "executor.qos=low"], capsys
    )
    assert status == 0, err
    launch = tmp_path / "o" / "launch"
    runs = json.loads((launch / "runs.json").read_text())
    assert [r["run_id"] for r in runs] == [f"{v}__seed-{s}" for v in ("cpu2", "gpu4") for s in (0, 1, 2)]
    assert not (tmp_path / "o" / "runs").exists()  # nothing trained, nothing submitted
    scripts = sorted((launch / "dry-run").glob("*.sbatch"))
    assert len(scripts) == 2  # one job array per resource shape
    cpu, gpu = (sbatch_fields(p.read_text()) for p in scripts)
    for f in (cpu, gpu):
        assert f["partition"] == "gpu" and f["time"] == str(26 * 60 + 30) and f["account"] == "ssl-lab"
        assert f["qos"] == "low" and f["constraint"] == "a100"  # executor.qos=low overrides the file
        assert f["array"] == "0-2%2" and f["cpus-per-task"] == "8" and f["mem"] == "65536MB"
        assert f["signal"] == "USR1@300" and "requeue" in f and "exclusive" in f and f["mail-type"] == "END"
        assert f["job-name"] == "dimcollapse"
    assert cpu["nodes"] == "1" and cpu["ntasks-per-node"] == "2" and "gpus-per-node" not in cpu
    assert gpu["nodes"] == "1" and gpu["ntasks-per-node"] == "4" and gpu["gpus-per-node"] == "4"
    text = scripts[0].read_text()
    assert "module load cuda/12" in text and re.search(r"^srun .*submitit\.core\._submit", text, re.M)
    assert "--ntasks=" not in text and "#SBATCH --ntasks " not in text  # Lightning refuses srun -n


@pytest.mark.slurm
@pytest.mark.timeout(1200)
def test_a_grid_runs_as_one_job_array_with_the_local_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_slurm()
    study = write_study(tmp_path / "spec", GRID4)
    common = ["--no-report", "--no-baselines"]
    status, _, err = cli(["study", str(study), "--out", str(tmp_path / "slurm"), "--executor", "slurm",
                          "executor.array_parallelism=2", "executor.time=20", *common], capsys)  # fmt: skip
    assert status == 0, err
    ledger = json.loads((tmp_path / "slurm" / "launch" / "jobs.json").read_text())
    ids = sorted(e["job_id"] for e in ledger.values())
    assert len(ids) == 4 and len({i.split("_")[0] for i in ids}) == 1  # one array of 4 SLURM jobs
    assert sorted(int(i.split("_")[1]) for i in ids) == [0, 1, 2, 3]
    for run_id, entry in ledger.items():  # each run's record names its SLURM job
        record = metrics(tmp_path / "slurm" / "runs" / run_id)
        assert record["executor"] == "slurm" and record["job_id"] == entry["job_id"]
        assert record["slurm_array_task_id"] == entry["job_id"].split("_")[1] and record["host"]
    script = next((tmp_path / "slurm" / "launch" / "slurm").glob("*/*_submission.sh")).read_text()
    assert sbatch_fields(script)["array"] == "0-3%2"
    status, _, err = cli(["study", str(study), "--out", str(tmp_path / "local"), *common], capsys)
    assert status == 0, err
    local, slurm = rows(tmp_path / "local"), rows(tmp_path / "slurm")
    assert sorted(local) == sorted(slurm) and len(local) == 4
    for run_id in local:
        assert_same_results(local[run_id], slurm[run_id], f"slurm vs local, {run_id}")


@pytest.mark.slurm
@pytest.mark.ddp
@pytest.mark.timeout(900)
def test_a_ddp_run_under_slurm_is_two_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_slurm()
    study = write_study(tmp_path / "spec", DDP)
    status, _, err = cli(["study", str(study), "--out", str(tmp_path / "o"), "--executor", "slurm",
                          "--no-report", "--no-baselines"], capsys)  # fmt: skip
    assert status == 0, err
    job_dir = next(p for p in (tmp_path / "o" / "launch" / "slurm").iterdir() if p.is_dir())
    assert sbatch_fields((job_dir / f"{job_dir.name}_submission.sh").read_text())["ntasks-per-node"] == "2"
    logs = {p.name: p.read_text() for p in job_dir.glob("*_log.err")}
    assert len(logs) == 2 and "GLOBAL_RANK: 1" in "".join(logs.values())  # rank 1 is SLURM task 1
    m = metrics(tmp_path / "o" / "runs" / "ddp2")
    assert m["steps"] > 0 and m["eval_processes"] == 2  # both SLURM tasks evaluated their shares


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.mark.slurm
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("how", ["scontrol requeue", "USR1 warning"])
def test_a_requeued_run_resumes_by_itself_with_the_same_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    require_slurm()
    study = write_study(
        tmp_path / "spec", "name: rq\nbase: base.yaml\nset: {optim.epochs: 100}\nruns: [{name: long}]\n"
    )
    out = tmp_path / "slurm"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dimcollapse", "study", str(study), "--out", str(out), "--executor", "slurm",
         "--no-report", "--no-baselines"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        jobs = out / "launch" / "jobs.json"
        _wait_for(jobs.is_file, 120, "the submission")
        job_id = json.loads(jobs.read_text())["long"]["job_id"]
        log = out / "launch" / "slurm" / job_id / f"{job_id}_0_log.err"
        progress = out / "runs" / "long" / "progress.json"
        # a few steps in (progress.json is written every 10 steps), well before the 300th step: on an idle
        # host a step takes ~20 ms, so the signal lands mid-run however fast the host is
        _wait_for(lambda: (read_progress(progress) or {}).get("step", 0) >= 10, 300, "training to start")
        if how == "scontrol requeue":  # SLURM stops the job (SIGTERM to its tasks) and queues it again
            subprocess.run(["scontrol", "requeue", job_id], check=True, capture_output=True)
        else:  # the time-limit / preemption warning: the run saves, requeues its own job and exits
            subprocess.run(["scancel", "--signal=USR1", job_id], check=True, capture_output=True)
        last = out / "runs" / "long" / "checkpoints" / "last.ckpt"
        _wait_for(last.is_file, 120, "the checkpoint saved on SIGTERM")
        time.sleep(1.0)  # written atomically; the stop also writes its record
        stopped = int(torch.load(last, map_location="cpu", weights_only=False)["global_step"])
        # a requeued job waits for its begin time (about 2 minutes); release it now
        _wait_for(lambda: "PENDING" in subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"],
                  capture_output=True, text=True).stdout, 120, "the job to be pending again")  # fmt: skip
        subprocess.run(
            ["scontrol", "update", f"jobid={job_id}", "StartTime=now"], check=True, capture_output=True
        )
        text, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["scancel", "--name", "dimcollapse"], capture_output=True)
    assert proc.returncode == 0, text
    assert ("SIGTERM" if how == "scontrol requeue" else "SIGUSR1") in log.read_text()  # what stopped it
    resumed = metrics(out / "runs" / "long")
    assert 0 < stopped < resumed["steps"] and resumed["resumed"] is True
    restarts = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert "Restarts=1" in restarts or "Invalid job id" in restarts
    # the same run without interruption, trained locally
    status, _, err = cli(
        ["study", str(study), "--out", str(tmp_path / "local"), "--no-report", "--no-baselines"], capsys
    )
    assert status == 0, err
    assert_same_results(metrics(tmp_path / "local" / "runs" / "long"), resumed, "requeued vs uninterrupted")


@pytest.mark.slurm
def test_a_partition_that_does_not_exist_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_slurm()
    study = write_study(tmp_path / "spec", "name: t\nbase: base.yaml\nruns: [{name: a}]\n")
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    status, _, err = cli(["study", str(study), "--out", str(tmp_path / "o"), "--executor", "slurm",
                          "executor.partition=nosuchpart"], capsys)  # fmt: skip
    assert status == 2 and err.count("\n") == 1 and "SLURM partition 'nosuchpart' does not exist" in err
    assert not (tmp_path / "o").exists()
    assert subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout == before


@pytest.mark.slurm
@pytest.mark.timeout(900)
def test_a_rerun_follows_the_jobs_still_queued_instead_of_submitting_twice(tmp_path: Path) -> None:
    require_slurm()
    study = write_study(tmp_path / "spec", "name: one\nbase: base.yaml\nruns: [{name: a}]\n")
    out = tmp_path / "o"
    argv = [sys.executable, "-m", "dimcollapse", "study", str(study), "--out", str(out)]
    argv += ["--executor", "slurm", "--no-report", "--no-baselines"]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    jobs = out / "launch" / "jobs.json"
    try:
        _wait_for(jobs.is_file, 120, "the submission")
        job_id = json.loads(jobs.read_text())["a"]["job_id"]
        first.terminate()  # the study process stops; its job runs on
        text, _ = first.communicate(timeout=60)
        assert first.returncode == 143 and "keep running on SLURM" in text, text
        second = subprocess.run(argv, capture_output=True, text=True, timeout=800)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 0, second.stderr
    said = " ".join(second.stderr.split())
    # the job is followed while SLURM still holds it; on an idle host it can end before the rerun starts,
    # and then the rerun finds it done. Either way it is never submitted a second time.
    assert f"following a's job {job_id}" in said or "1 already done" in said, said
    assert json.loads(jobs.read_text())["a"]["job_id"] == job_id  # not submitted a second time
    assert metrics(out / "runs" / "a")["steps"] > 0
