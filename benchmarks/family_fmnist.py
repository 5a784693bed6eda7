"""The OR-paper family on Fashion-MNIST (CPU): every method's fmnist recipe trained for the same number of
steps, with and without SO, for the given seeds; kNN top-1 (k = 200), effective rank of r and training
seconds per step from each run's metrics.json. A run whose loss becomes non-finite is recorded as diverged.

    python benchmarks/family_fmnist.py --out /tmp/family --steps 50 --batch 128 --seeds 0 1 2
    python benchmarks/family_fmnist.py --out /tmp/family --steps 50 --batch 128 --summarize  # the table

Training processes may run side by side on disjoint --methods; --summarize writes
benchmarks/results/family_fmnist.json; the markdown table (with the computed SO verdicts) is printed.
Runs already finished in --out are reused, so an interrupted sweep continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from dimcollapse.errors import InputError
from dimcollapse.report.claims import decide
from dimcollapse.study.baselines import compute_baselines
from dimcollapse.training.config import load_config
from dimcollapse.training.run import train
from dimcollapse.utils.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "family_fmnist.json"
METHODS = ("simclr_mlp", "byol", "simsiam", "barlow_twins", "vicreg", "mocov2plus", "mocov3", "nnclr",
           "nnbyol", "dino", "swav", "ressl", "vibcreg", "wmse", "dcl")  # fmt: skip
SO = "regularizers=[{name: so, kwargs: {weight: 1.0e-4}}]"  # issue 5's calibrated fmnist coefficient


def overrides(steps: int, seed: int, batch: int) -> list[str]:
    """Equal step budget (cosine schedule, no time cap), cheap final evaluation, no monitor, one thread."""
    return [f"optim.max_steps={steps}", f"data.batch_size={batch}", "optim.warmup_epochs=0.02",
            "optim.max_time_minutes=null",
            f"trainer.seed={seed}", "trainer.num_threads=1", "trainer.progress_bar=false",
            "trainer.tensorboard=false", f"trainer.checkpoint_every={steps}", "monitor.enabled=false",
            "eval.linear_probe=false", "eval.online_probe=false", "eval.max_train=5000",
            "eval.max_test=2000", "eval.knn_k=[200]"]  # fmt: skip


def run_one(out: Path, method: str, reg: str, steps: int, seed: int, batch: int) -> dict[str, Any]:
    """Train one cell (or read its finished metrics); returns the row."""
    folder = out / f"{method}_{reg}_s{seed}"
    row: dict[str, Any] = {"method": method, "regularizer": reg, "seed": seed}
    if (folder / "metrics.json").is_file():
        m = json.loads((folder / "metrics.json").read_text())
    elif (folder / "diverged.json").is_file():
        return {**row, **json.loads((folder / "diverged.json").read_text())}
    else:
        extra = [SO] if reg == "so" else []
        cfg = load_config(
            ROOT / "configs" / "fmnist" / f"{method}.yaml", [*overrides(steps, seed, batch), *extra]
        )
        t0 = time.perf_counter()
        try:
            m = train(cfg, folder)
        except InputError as e:  # NonFiniteLossError: the method diverged
            info = {"diverged": True, "error": str(e).splitlines()[0][:300]}
            atomic_write_json(folder / "diverged.json", info)
            return {**row, **info}
        m["wall_s"] = time.perf_counter() - t0
    return {**row, "diverged": False, "steps": m["steps"], "knn_k200_top1": m["knn_k200_top1"],
            "erank_r": m["erank_r"], "s_per_step": m["train_time_s"] / max(1, m["steps"])}  # fmt: skip


def verdict(rows: list[dict[str, Any]], method: str, metric: str) -> str:
    """Computed verdict of "SO raises <metric>" for one method: Welch test over the seeds (2 s.e.)."""
    vals = {
        reg: [r[metric] for r in rows if (r["method"], r["regularizer"], r["diverged"]) == (method, reg, 0)]
        for reg in ("so", "none")
    }
    v, _ = decide(vals["so"], vals["none"], "greater")
    return v if len(vals["so"]) >= 2 and len(vals["none"]) >= 2 else f"{v} (single seed)"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per method and regularizer, mean +- std (n seeds) of kNN, erank(r), s/step; SO verdicts."""

    def cell(values: list[float], fmt: str) -> str:
        if not values:
            return "-"
        sd = f" +- {stdev(values):{fmt}}" if len(values) > 1 else ""
        return f"{mean(values):{fmt}}{sd}"

    lines = [
        "| method | reg | n | diverged | kNN k=200 (%) | erank(r) | s/step | SO raises kNN "
        "| SO raises erank(r) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        for reg in ("none", "so"):
            sel = [r for r in rows if r["method"] == method and r["regularizer"] == reg]
            if not sel:
                continue
            ok = [r for r in sel if not r["diverged"]]
            verdicts = (
                f"{verdict(rows, method, 'knn_k200_top1')} | {verdict(rows, method, 'erank_r')}"
                if reg == "so"
                else " | "
            )
            lines.append(
                f"| {method} | {reg} | {len(sel)} | {len(sel) - len(ok)} | "
                f"{cell([100 * r['knn_k200_top1'] for r in ok], '.1f')} | "
                f"{cell([r['erank_r'] for r in ok], '.1f')} | {cell([r['s_per_step'] for r in ok], '.2f')} | "
                f"{verdicts} |"
            )
    return "\n".join(lines)


def baselines(steps: int, batch: int, seeds: list[int]) -> list[dict[str, Any]]:
    """Raw-pixel and random-init kNN k=200 on the runs' evaluation split (what the table is read against)."""
    rows = []
    for seed in seeds:
        cfg = load_config(ROOT / "configs" / "fmnist" / "simclr_mlp.yaml", overrides(steps, seed, batch))
        for r in compute_baselines(cfg):
            rows.append({"baseline": r["variant"], "seed": seed, "knn_k200_top1": r["knn_k200_top1"]})
    return rows


def baseline_line(rows: list[dict[str, Any]]) -> str:
    """One line: each baseline's kNN k=200 as mean +- std over the seeds."""
    parts = []
    for name in dict.fromkeys(r["baseline"] for r in rows):
        v = [100 * r["knn_k200_top1"] for r in rows if r["baseline"] == name]
        sd = f" +- {stdev(v):.1f}" if len(v) > 1 else ""
        parts.append(f"{name} {mean(v):.1f}{sd}%")
    return "Baselines, kNN k=200 on the same split: " + "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=256, help="data.batch_size of every run (recipes: 256)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--regs", nargs="+", default=["none", "so"])
    parser.add_argument("--summarize", action="store_true", help="only tabulate the finished runs")
    args = parser.parse_args()
    rows = []
    for method in args.methods:  # method-major: each method's seeds finish together
        for seed in args.seeds:
            for reg in args.regs:
                done = (args.out / f"{method}_{reg}_s{seed}" / "metrics.json").is_file()
                if args.summarize and not done:
                    continue
                rows.append(run_one(args.out, method, reg, args.steps, seed, args.batch))
                print(json.dumps(rows[-1]), flush=True)
    if args.summarize:  # training processes may run side by side; only the summary writes the result file
        base = baselines(args.steps, args.batch, args.seeds)
        machine = f"{os.cpu_count()} CPU cores, 1 thread per run (s/step is wall time on a shared host)"
        info = {"steps": args.steps, "batch_size": args.batch, "machine": machine, "baselines": base}
        atomic_write_json(RESULT, {**info, "rows": rows})
        print(baseline_line(base))
    print(table(rows))


if __name__ == "__main__":
    main()
