"""How long a `dimcollapse train` process takes to exit after its run wrote metrics.json, with and without
the console entry's ``gc.freeze()`` (cli/main.py:main).

    python benchmarks/bench_exit.py [--rounds 3]

Each round runs a tiny recipe twice as a fresh process, interleaved: ``main()`` (the entry point: freeze,
then exit) and ``run()`` followed by a plain ``sys.exit`` (the interpreter's shutdown collections walk every
object). The figure is the wall time from metrics.json's modification to the process's end; medians over
rounds. About 2 minutes on a loaded 2-core host.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = """\
data: {name: synthetic, batch_size: 16, kwargs: {n: 160, image_size: 8, channels: 1, num_classes: 4}}
model: {backbone_kwargs: {widths: [4, 8], blocks: [1, 1]}, projector_kwargs: {hidden_dim: 16, out_dim: 8}}
optim: {max_steps: 4}
monitor: {every_n_steps: 2, probe_size: 16, lid_k: 4}
trainer: {progress_bar: false, tensorboard: false, checkpoint_every: 2}
eval: {linear_probe_epochs: 5, knn_k: [5], lid_k: 4}
"""
ENTRIES = {
    "main (gc.freeze)": "from dimcollapse.cli.main import main; main()",
    "run + sys.exit": "import sys; from dimcollapse.cli.main import run; sys.exit(run(sys.argv[1:]))",
}


def exit_delay(code: str, recipe: Path, out: Path) -> float:
    """Seconds from the run's metrics.json to the end of its process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    argv = [sys.executable, "-c", code, "train", str(recipe), "--out", str(out)]
    subprocess.run(argv, env=env, capture_output=True, check=True, timeout=600)
    end = time.time()
    return end - (out / "metrics.json").stat().st_mtime


def main() -> None:
    """Interleaved rounds of both entries; print the medians and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    times: dict[str, list[float]] = {name: [] for name in ENTRIES}
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "tiny.yaml"
        recipe.write_text(TINY)
        for r in range(a.rounds):
            for i, (name, code) in enumerate(ENTRIES.items()):
                times[name].append(exit_delay(code, recipe, Path(tmp) / f"run{r}_{i}"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"metrics.json -> process end, median of {a.rounds} interleaved rounds (load average {load:.1f}):")
    for name, xs in times.items():
        print(f"  {name:18s} {statistics.median(xs):6.2f} s   (rounds: {', '.join(f'{x:.2f}' for x in xs)})")


if __name__ == "__main__":
    main()
