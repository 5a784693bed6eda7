"""Wall time of a 4-run tiny study grid with the local executor (one run after another), `--parallel 2`
and, where SLURM answers, `--executor slurm` with array parallelism 2 (issue 23).

Each contender runs the same study (2 variants x 2 seeds, 4 steps each, tiny ResNet on synthetic
images) into a fresh folder, interleaved round by round; a run's time is mostly process start-up
(imports) and evaluation, which is what a grid of short runs pays.

    python benchmarks/bench_launch.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from _common import ratio_stats, save  # noqa: E402

from launch_helpers import BASE, GRID4  # noqa: E402


def _study(root: Path, args: list[str]) -> float:
    import time

    out = root / "out"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "dimcollapse", "study", str(root / "study.yaml"), "--out", str(out),
           "--no-report", "--no-baselines", *args]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    """Measure and write benchmarks/results/launch.json."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    contenders = {"local": [], "local --parallel 2": ["--parallel", "2"]}
    if shutil.which("sbatch") and subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0:
        contenders["slurm (array parallelism 2)"] = ["--executor", "slurm", "executor.array_parallelism=2"]
    times: dict[str, list[float]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "base.yaml").write_text(BASE)
        (root / "study.yaml").write_text(GRID4)
        for _ in range(args.rounds):
            for name, extra in contenders.items():
                times[name].append(_study(root, extra))
                print(f"{name}: {times[name][-1]:.1f} s", flush=True)
    summary = {name: {"median_s": statistics.median(t), "rounds_s": t} for name, t in times.items()}
    ratios = {name: ratio_stats(t, times["local"]) for name, t in times.items() if name != "local"}
    result = {"grid": "4 runs (2 variants x 2 seeds), 4 steps each", "rounds": args.rounds,
              "wall_time": summary, "over_local": ratios}  # fmt: skip
    print(save("launch", result, quick=False))
    print(result)


if __name__ == "__main__":
    main()
