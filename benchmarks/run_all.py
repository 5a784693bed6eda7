"""Run the issue-15 comparisons (bench_diagnostics.py, bench_step.py, bench_loop.py), the method family's
step cost (bench_family_step.py, issue 14) and the final evaluation (bench_eval.py, issue 25), each in its own
process, and report which failed. Other
bench_*.py scripts (training accuracy runs, views, models, regularizers) take their own arguments and run
with --only.

python benchmarks/run_all.py [--quick] [--only NAME ...]   (NAME: the part after bench_, e.g. diagnostics)
Each script prints its ratios and writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT = ("diagnostics", "step", "loop", "family_step", "eval")  # the comparisons `make bench` prints


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help="names to run (default: the comparisons)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that the scripts run")
    args = ap.parse_args()
    scripts = [HERE / f"bench_{name}.py" for name in DEFAULT]
    if args.only:
        scripts = sorted(HERE.glob("bench_*.py"))
        wanted = set(args.only)
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
        missing = wanted - {s.stem.removeprefix("bench_") for s in scripts}
        if missing:
            print(
                f"error: no benchmark named {sorted(missing)}; have: "
                f"{[s.stem.removeprefix('bench_') for s in sorted(HERE.glob('bench_*.py'))]}"
            )
            return 2
    failed: list[str] = []
    for script in scripts:
        print(f"\n## {script.stem}\n", flush=True)
        t = time.perf_counter()
        extra = ["--quick"] if args.quick and script.stem.removeprefix("bench_") in DEFAULT else []
        rc = subprocess.call([sys.executable, str(script), *extra], cwd=HERE.parent)
        print(f"\n({script.name}: exit {rc}, {time.perf_counter() - t:.0f} s)", flush=True)
        if rc != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    print(f"\nall {len(scripts)} benchmarks finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
