"""The full Lightning loop as the demo runs it against the bare engine step (issue 15).

Each round fits ``--steps`` steps as ``dimcollapse.training.run.train`` does (Lightning, the collapse monitor,
the online probe, checkpoints, CSV + TensorBoard logging, the progress bar, the demo's settings; not the
final evaluation, which runs once after training) and then times the same
number of engine steps outside Lightning (views + forward + loss + backward + optimizer step on one batch,
``bench_step.step_jobs``). The loop's time per step runs from the start of its second batch to the end of
its last one (data loading, logging, callbacks and checkpoints between the batches included; set-up and
the final evaluation excluded). Ratio per round, min / median / max over rounds.

python benchmarks/bench_loop.py [--quick] [--rounds 5] [--steps 100]
Writes benchmarks/results/loop.json (results/quick/ with --quick).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_ratio, ratio_stats, save
from bench_step import step_jobs

RECIPE = "configs/fmnist/simclr_mlp.yaml"


class StepClock(L.Callback):
    """Wall time at the start of every training batch and at the end of the last one."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.end = 0.0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int
    ) -> None:
        self.starts.append(time.perf_counter())

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        self.end = time.perf_counter()

    def per_step(self) -> float:
        """Seconds per step from the second batch's start to the last batch's end."""
        return (self.end - self.starts[1]) / (len(self.starts) - 1)


def loop_per_step(overrides: list[str], steps: int) -> float:
    """Fit ``steps`` steps into a temporary folder exactly as ``training.run.train`` does (same callbacks,
    trainer, loggers, checkpoints), without the final evaluation; seconds per step."""
    from dimcollapse.training.callbacks import GracefulStop
    from dimcollapse.training.callbacks.progress import ProgressWriter
    from dimcollapse.training.cluster import job_info
    from dimcollapse.training.config import load_config
    from dimcollapse.training.run import _callbacks, _fit, build_trainer, prepare

    cfg = load_config(RECIPE, [*overrides, f"optim.max_steps={steps}"])
    clock = StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        prep = prepare(cfg, out, False)
        stop = GracefulStop(out / "checkpoints" / "last.ckpt", out, job_info())
        progress = ProgressWriter(
            out / "progress.json", job_info(), prep.module.total_steps, 10, enabled=False
        )
        watch = _callbacks(prep, out, [clock], stop, progress)
        trainer = build_trainer(prep.plan.trainer, out, watch.callbacks)
        _fit(trainer, prep, watch, out, stop)
    return clock.per_step()


def engine_per_step(engine: Any, steps: int) -> float:
    """Seconds per engine step, ``steps`` steps in a row."""
    t = time.perf_counter()
    for _ in range(steps):
        engine()
    return (time.perf_counter() - t) / steps


def main() -> None:
    """Alternate a Lightning run and as many engine steps, round after round; print the ratio."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batch 32, 12 steps, 2 rounds: checks the script")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore", message=".*self.log.*")
    steps, rounds = (12, 2) if a.quick else (a.steps, a.rounds)
    every = max(2, steps // 2)  # the monitor measures twice per run (the demo: every 50 of 500 steps)
    overrides = [
        "optim.max_time_minutes=null",
        f"monitor.every_n_steps={every}",
        f"trainer.checkpoint_every={steps}",  # one checkpoint per run: more often than the demo's 250
        f"trainer.num_threads={a.threads}",
        *(["data.batch_size=32"] if a.quick else []),
    ]
    jobs, _ = step_jobs(RECIPE, overrides, None)
    engine = jobs["engine"]
    engine()  # warm-up
    loop_t: list[float] = []
    engine_t: list[float] = []
    for _ in range(rounds):
        loop_t.append(loop_per_step(overrides, steps))
        engine_t.append(engine_per_step(engine, steps))
    ratio = ratio_stats(loop_t, engine_t)
    print(f"Lightning loop / engine step: {fmt_ratio(ratio)} (target <= 1.10)")
    payload = {
        "benchmark": "loop",
        "recipe": RECIPE,
        "overrides": overrides,
        "steps": steps,
        "rounds": rounds,
        "threads": a.threads,
        "seconds_per_step_median": {
            "loop": sorted(loop_t)[len(loop_t) // 2],
            "engine": sorted(engine_t)[len(engine_t) // 2],
        },
        "loop_over_engine": ratio,
    }
    print(f"\nwrote {save('loop', payload, a.quick)}")


if __name__ == "__main__":
    main()
