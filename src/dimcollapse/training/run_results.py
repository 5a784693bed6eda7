"""What a finished run reports: the final evaluation and record for metrics.json, and the message of a
divergence (step, kept checkpoint, a fix that works)."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

import lightning as L
import torch

import dimcollapse
from dimcollapse.errors import DivergedError
from dimcollapse.records import RunRecord
from dimcollapse.training.callbacks import CollapseMonitor, OnlineProbe
from dimcollapse.training.checkpoint import FiniteModelCheckpoint, describe_bad, load_checkpoint
from dimcollapse.training.cluster import job_info
from dimcollapse.training.evaluate_run import EvalData, evaluate_module
from dimcollapse.training.prepared import OVERRIDE_LR_MAX, Prepared
from dimcollapse.training.run_folder import FINAL, last_checkpoint
from dimcollapse.training.run_record import components_used, scale_record, training_record
from dimcollapse.utils.distributed import broadcast_from_rank0


def git_commit() -> str:
    """The git commit of the dimcollapse source tree ('unknown' outside a checkout)."""
    here = Path(dimcollapse.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def versions() -> dict[str, str]:
    """Versions of python, torch, lightning and dimcollapse."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "dimcollapse": dimcollapse.__version__,
    }


def diverged_error(e: DivergedError, lr: float, ckpt: FiniteModelCheckpoint, out: Path) -> DivergedError:
    """The divergence error with the step, the kept checkpoint and a fix that works (``lr``: the run's
    optim.lr; the fix advises a tenth of it)."""
    last = last_checkpoint(out)
    lower = f"{min(lr / 10, OVERRIDE_LR_MAX):.3g}"  # a value --override-lr accepts
    if e.what == "the probe embeddings":
        head = f"the monitor's probe embeddings became non-finite at step {e.step}"
    elif e.what.startswith(("objective", "regularizer", "the sum")) or not e.what:
        head = f"the loss became non-finite at step {e.step} (from {e.what or 'the sum of terms'})"
    else:
        head = f"the model state became non-finite at step {e.step} ({e.what})"
    first = ""
    if ckpt.first_bad is not None and ckpt.first_bad[0] != e.step:
        step, bad = ckpt.first_bad
        first = f" The state first held NaN/Inf at step {step} ({describe_bad(bad)})."
    if last.is_file():
        at = f" (step {ckpt.last_good_step})" if ckpt.last_good_step is not None else ""
        keep = f"The last good checkpoint{at} is kept at '{last}'."
        fix = (
            "To continue from it with a lower learning rate, rerun the same command with "
            f"--resume --override-lr {lower}."
        )
    else:
        keep = "No checkpoint was written yet."
        fix = f"Rerun with a lower learning rate (optim.lr={lower}) or more warm-up (optim.warmup_epochs)."
    return DivergedError(f"{head}; training stopped.{first} {keep} {fix}", e.step, e.what)


def evaluate_on_every_rank(prep: Prepared, device: torch.device) -> RunRecord:
    """The final evaluation on ``device`` (the rank's own; Lightning's teardown left the module on the
    CPU), every rank its share (collective): the module's state (parameters and buffers such as
    BatchNorm statistics, which DDP leaves rank-local after the last step) is rank 0's on every rank."""
    prep.module.to(device)
    for t in prep.module.state_dict().values():
        broadcast_from_rank0(t)
    return evaluate_module(prep.module, EvalData.from_datamodule(prep.dm), prep.evaluation)


def final_metrics(
    trainer: L.Trainer,
    prep: Prepared,
    monitor: CollapseMonitor | None,
    probe: OnlineProbe | None,
    out: Path,
    fit_s: float,
    evaluation: RunRecord | None = None,
) -> dict[str, Any]:
    """Evaluation of the final model (``evaluation`` when every rank made it, else here in this process)
    plus what was trained, how long, where, and the monitor's summary."""
    plan, dm, module = prep.plan, prep.dm, prep.module
    ckpt_dir = out / "checkpoints"
    start_step, time_before = 0, 0.0
    if prep.previous is not None:
        start_step = int(prep.previous.get("global_step", 0))
        time_before = float(prep.previous.get("dimcollapse_train_time_s", 0.0))
    if not (ckpt_dir / FINAL).is_file():  # resumed at the last step: fit had nothing left to train
        trainer.save_checkpoint(str(ckpt_dir / FINAL), weights_only=False)
    final = load_checkpoint(ckpt_dir / FINAL)
    steps = int(final.get("global_step", 0))
    if int(trainer.global_step) != steps:  # training ran in spawned processes: take over their results
        module.load_state_dict(final["state_dict"])
        if monitor is not None and monitor.state_key in final.get("callbacks", {}):
            monitor.load_state_dict(final["callbacks"][monitor.state_key])
    train_s = float(final.get("dimcollapse_train_time_s", module.train_time_s))
    session_s = max(train_s - time_before, 1e-9)
    if evaluation is None:
        module.to(trainer.strategy.root_device)  # the training device (Lightning's teardown: the CPU)
        evaluation = evaluate_module(module, EvalData.from_datamodule(dm), prep.evaluation)
    metrics: dict[str, Any] = evaluation.fields()
    metrics.update(
        {
            **training_record(trainer, steps, plan.trainer),
            "train_time_s": train_s,
            "fit_time_s": fit_s,
            "images_per_s": (steps - start_step) * plan.global_batch_size / session_s,
            "seed": plan.trainer.seed,
            "versions": versions(),
            "git_commit": git_commit(),
            "resumed": bool(prep.mode.resume),
            "components": components_used(plan.config),
            "kernels": plan.trainer.kernels.record(plan.trainer.device),
            **scale_record(plan),
            **job_info().record(),
        }
    )
    if prep.lr_change is not None:
        metrics["lr_override"] = prep.lr_change
    if monitor is not None:
        metrics["monitor_time_s"] = monitor.time_s
        metrics["monitor_fraction"] = monitor.time_s / max(train_s, 1e-9)
        metrics["monitor_warnings"] = monitor.warnings
        metrics["monitor_skipped"] = monitor.recorder.budget.skipped
        metrics["monitor_verdict"] = monitor.verdict()
        monitor.write()
    last_top1 = probe.last_batch_accuracy() if probe is not None else None
    if last_top1 is not None:
        metrics["online_probe_last_batch_top1"] = last_top1
    return metrics
