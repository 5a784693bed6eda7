"""Scale settings of a run: trainer.num_nodes (refused in one line outside a multi-node launcher),
gradient accumulation (optimizer steps, epochs and the lr schedule count optimizer steps; a resumed run
equals an uninterrupted one), loader options, and the run record of where a run ran (executor, host, SLURM
job / array ids, requeue count) in metrics.json and progress.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from dimcollapse.errors import ConfigError
from dimcollapse.training.checkpoint import load_checkpoint
from dimcollapse.training.cluster import launch_rank, multi_node_launcher
from dimcollapse.training.config import load_config
from dimcollapse.training.optim import warmup_cosine
from dimcollapse.training.run import train
from robust_helpers import TINY
from train_process_helpers import LAUNCHER_VARS, SMALL_YAML, start_train


@pytest.fixture
def no_launcher(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment without SLURM, torchrun or Lightning launcher variables."""
    import os

    for key in [k for k in os.environ if k.startswith(("SLURM_", "TORCHELASTIC"))] + list(LAUNCHER_VARS):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_num_nodes_outside_a_multi_node_launcher_is_one_line_exit_2_nothing_written(
    tmp_path: Path, no_launcher: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dimcollapse.cli.main import run

    (tmp_path / "c.yaml").write_text(SMALL_YAML)
    out = tmp_path / "out"
    assert run(["train", str(tmp_path / "c.yaml"), "trainer.num_nodes=2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: trainer.num_nodes=2 needs a multi-node launcher")
    assert "srun -N 2 --ntasks-per-node=" in err and "torchrun --nnodes 2" in err
    assert not out.exists()


def test_multi_node_launchers_and_launch_ranks_are_read_from_the_environment(
    no_launcher: pytest.MonkeyPatch,
) -> None:
    assert multi_node_launcher() is None and launch_rank() == 0
    no_launcher.setenv("SLURM_JOB_ID", "5")
    no_launcher.setenv("SLURM_NNODES", "2")
    no_launcher.setenv("SLURM_NTASKS", "4")
    no_launcher.setenv("SLURM_PROCID", "3")
    assert multi_node_launcher() == "slurm" and launch_rank() == 3
    no_launcher.setenv("SLURM_NTASKS", "1")  # one task (a study's job): SLURM sets no ranks
    no_launcher.setenv("LOCAL_RANK", "1")  # ... but Lightning's re-executed rank 1 does
    assert launch_rank() == 1
    for key in ("SLURM_JOB_ID", "SLURM_NNODES", "SLURM_NTASKS", "SLURM_PROCID", "LOCAL_RANK"):
        no_launcher.delenv(key)
    no_launcher.setenv("TORCHELASTIC_RUN_ID", "x")
    no_launcher.setenv("RANK", "2")
    assert multi_node_launcher() == "torchrun" and launch_rank() == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.num_nodes=0", "trainer.num_nodes must be > 0"),
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches must be > 0"),
        ("data.persistent_workers=true", "data.persistent_workers applies to loader worker processes"),
        ("data.prefetch_factor=4", "data.prefetch_factor applies to loader worker processes"),
        ("data.prefetch_factor=0", "data.prefetch_factor must be >= 1"),
    ],
)
def test_scale_keys_are_validated(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(None, [*TINY, override])


def test_loader_options_reach_the_loader() -> None:
    from dimcollapse.training.plan import plan_run

    cfg = load_config(
        None, [*TINY, "data.num_workers=1", "data.persistent_workers=true", "data.prefetch_factor=3"]
    )
    dm = plan_run(cfg).datamodule
    dm.in_memory = False  # the path of datasets read item by item (image folders)
    loader = dm.train_dataloader()
    assert loader.num_workers == 1 and loader.persistent_workers and loader.prefetch_factor == 3
    assert not loader.pin_memory  # pinned memory is for CUDA only


class Count(L.Callback):
    """Micro-batches, optimizer steps and the lr of each optimizer step."""

    def __init__(self) -> None:
        self.batches, self.steps = 0, 0
        self.lr: list[float] = []

    def on_train_batch_end(self, *args: Any) -> None:
        self.batches += 1

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: Any, optimizer: Any) -> None:
        self.steps += 1
        self.lr.append(float(optimizer.param_groups[0]["lr"]))


class Kill(L.Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("simulated kill")


def test_accumulation_counts_optimizer_steps_and_resumes_exactly(tmp_path: Path) -> None:
    overrides = [
        *TINY,
        "trainer.accumulate_grad_batches=2",
        "optim.max_steps=6",
        "trainer.checkpoint_every=2",
    ]
    cfg = load_config(None, overrides)
    count = Count()
    full = train(cfg, tmp_path / "full", extra_callbacks=[count])
    # 144 pool images / (16 x 2 micro-batches) = 4 optimizer steps per epoch (warm-up: 1 epoch = 4 steps)
    assert (count.batches, count.steps) == (12, 6)
    assert full["steps"] == 6 and full["epochs"] == 1.5 and full["global_batch_size"] == 32
    assert full["accumulate_grad_batches"] == 2 and full["world_size"] == 1
    for step, lr in enumerate(count.lr):
        assert lr == pytest.approx(0.3 * warmup_cosine(step, 4, 6), rel=1e-12), step
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(cfg, tmp_path / "killed", extra_callbacks=[Kill(at=5)])
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.ckpt")["global_step"] == 4
    resumed = train(cfg, tmp_path / "killed")  # resumes by itself from step 4 (micro-batch 8)
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "final.ckpt")["state_dict"]
    b = load_checkpoint(tmp_path / "killed" / "checkpoints" / "final.ckpt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["knn_k5_top1"] == full["knn_k5_top1"] and resumed["erank_r"] == full["erank_r"]


def test_run_record_holds_executor_host_and_slurm_ids(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(SMALL_YAML)
    out, err = tmp_path / "run", tmp_path / "err"
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_ARRAY_JOB_ID": "4240", "SLURM_ARRAY_TASK_ID": "2"}
    proc = start_train(tmp_path / "c.yaml", out, err, "optim.max_steps=3",
                       DIMCOLLAPSE_EXECUTOR="slurm", SLURM_RESTART_COUNT="1", **slurm)  # fmt: skip
    assert proc.wait(timeout=600) == 0, err.read_text()[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    expected = {"executor": "slurm", "job_id": "4242", "slurm_job_id": "4242", "slurm_array_job_id": "4240",
                "slurm_array_task_id": "2", "requeue_count": 1, "world_size": 1, "num_nodes": 1}  # fmt: skip
    assert {k: metrics[k] for k in expected} == expected and metrics["host"]
    progress = json.loads((out / "progress.json").read_text())
    assert progress["state"] == "done" and progress["step"] == progress["max_steps"] == 3
    assert (progress["job_id"], progress["array_job_id"], progress["array_task_id"]) == ("4242", "4240", "2")
    assert progress["requeue_count"] == 1 and progress["executor"] == "slurm"
    assert progress["started"] <= progress["updated"] and progress["session_start_step"] == 0
