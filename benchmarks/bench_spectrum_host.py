"""Streamed spectrum vs np.cov + eigvalsh on this host, with both Gram kernels (issue 25, item 6).

The streamed covariance picks its CPU Gram kernel per host (``diagnostics/engine/gram_kernel.py``):
chunks summed in place by numpy's OpenBLAS syrk on AVX-512 cores, the blocked numpy product elsewhere.
This script times, interleaved round by round in one process per case:

- ``np_cov_eigvalsh``: ``np.linalg.eigvalsh(np.cov(Z.T))``, the two lines an expert writes;
- ``ours``: ``covariance_spectrum(Z)`` with this host's kernel;
- ``ours_chunks`` / ``ours_blocks``: the same call forced onto each kernel (the other host kind's choice);
- ``floor``: the float64 syrk ``X.T @ X`` of the already converted, centred data (no conversion, no eig).

Cases: 500 x 32, 2,000 x 64, 5,000 x 128 and 20,000 x 256 (small: a float64 copy of at most 128 MB takes
the one-block path, ``engine/covariance_small.py``; ``ours_streamed`` forces the streamed path beside it;
each call repeated so that a round lasts ~10-80 ms, at least 15 rounds), then 50,000 x 512 and
200,000 x 256 (float32, planted spectrum), each at 1 thread (process CPU time) and 2 threads (wall
time); then the extra peak memory of 1,000,000 x 256 streamed in 20k-row blocks
against np.cov's. Prints np.cov / ours per case, median (min-max) over rounds: > 1 means ours is faster.

python benchmarks/bench_spectrum_host.py [--rounds 5] [--quick]      (2-3 minutes on 2 idle cores)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_ratio, host, interleaved, ratio_stats
from bench_diagnostics import planted, set_threads

SMALL_CASES = [(n, d, t) for n, d in ((500, 32), (2_000, 64), (5_000, 128), (20_000, 256)) for t in (1, 2)]
CASES = [*SMALL_CASES, (50_000, 512, 1), (50_000, 512, 2), (200_000, 256, 1), (200_000, 256, 2)]
# the last quick case streams: its float64 copy (147 MiB) is above the one-block limit (128 MiB)
QUICK_CASES = [(2_000, 64, 1), (4_000, 64, 2), (300_000, 64, 2)]


def repeated(fn: Callable[[], Any], reps: int) -> Callable[[], Any]:
    """``fn`` called ``reps`` times (small cases: a round long enough for the clock and the host's noise)."""

    def run() -> Any:
        for _ in range(reps):
            out = fn()
        return out

    return run


def spectrum_timing(n: int, d: int, threads: int, rounds: int) -> dict[str, Any]:
    """One case, in this process: every contender interleaved; ratios within each round."""
    set_threads(threads)
    from dimcollapse.diagnostics import covariance_spectrum
    from dimcollapse.diagnostics.engine import covariance_small, gram_kernel

    z = planted(n, d)
    z64 = z.astype(np.float64)
    z64 -= z64.mean(0)
    host_choice = gram_kernel.use_chunks
    chunks_ok = gram_kernel.inplace_syrk() is not None

    def forced(chunks: bool) -> np.ndarray:
        gram_kernel.use_chunks = lambda: chunks  # type: ignore[method-assign]
        try:
            return covariance_spectrum(z)
        finally:
            gram_kernel.use_chunks = host_choice  # type: ignore[method-assign]

    def streamed() -> np.ndarray:
        covariance_small.ONE_BLOCK_BYTES, kept = 0, covariance_small.ONE_BLOCK_BYTES
        try:
            return covariance_spectrum(z)
        finally:
            covariance_small.ONE_BLOCK_BYTES = kept

    one_block = covariance_small.one_block_array(z, None) is not None
    jobs = {
        "np_cov_eigvalsh": lambda: np.linalg.eigvalsh(np.cov(z.T))[::-1],
        "ours": lambda: covariance_spectrum(z),
        "floor": lambda: z64.T @ z64,
    }
    if one_block:  # small: this call takes the one-block path; the streamed path forced beside it
        jobs["ours_streamed"] = streamed
    else:
        jobs["ours_blocks"] = lambda: forced(False)
        if chunks_ok:
            jobs["ours_chunks"] = lambda: forced(True)
    reps = max(1, 400_000_000 // (n * d * d))
    timed = {name: repeated(fn, reps) for name, fn in jobs.items()}
    clock = time.process_time if threads == 1 else time.perf_counter
    times = interleaved(timed, max(rounds, 15) if reps > 1 else rounds, clock)
    ref = np.linalg.eigvalsh(np.cov(z64.T, bias=True))[::-1]
    errors = {
        name: float(np.max(np.abs(fn() - ref)) / ref[0])
        for name, fn in jobs.items()
        if name.startswith("ours")
    }
    return {
        "case": f"{n:,} x {d}, {threads} thread(s) ({'CPU time' if threads == 1 else 'wall'})",
        "kernel": "one block (direct float64 np path)"
        if one_block
        else "chunks (in-place syrk)"
        if host_choice()
        else "blocks (numpy A.T @ A)",
        "np_cov_over": {k: ratio_stats(times["np_cov_eigvalsh"], v) for k, v in times.items()},
        "seconds_median": {k: float(np.median(v)) / reps for k, v in times.items()},
        "max_abs_error_over_lambda_max": errors,
    }


_MEMORY_CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, {bench!r})
from bench_diagnostics import set_threads
set_threads(1)
from dimcollapse.diagnostics import covariance_spectrum
n, d, b = {n}, {d}, 20_000
def blocks():
    rng = np.random.default_rng(0)
    for _ in range(n // b):
        yield rng.standard_normal((b, d), dtype=np.float32) + 3.0
def status(key):
    return [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key)][0] / 2**20
covariance_spectrum(np.ones((10, d), dtype=np.float32))
if {np_cov}:
    z = np.concatenate(list(blocks()))
    before = status("VmRSS:")
    np.linalg.eigvalsh(np.cov(z.T))
else:
    before = status("VmRSS:")
    covariance_spectrum(blocks())
print(json.dumps(status("VmHWM:") - before))
"""


def peak_extra_gib(n: int, d: int, np_cov: bool) -> float:
    """Extra peak RSS (GiB) of the call in a fresh process: ours streamed, or np.cov on the whole matrix."""
    code = _MEMORY_CHILD.format(bench=str(Path(__file__).resolve().parent), n=n, d=d, np_cov=np_cov)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    """Run every case in its own process and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: "n,d,threads"
    a = ap.parse_args()
    if a.case:
        n, d, threads = (int(v) for v in a.case.split(","))
        print(json.dumps(spectrum_timing(n, d, threads, a.rounds)))
        return
    from threadpoolctl import threadpool_info

    blas = threadpool_info()
    cores = sorted({str(i.get("architecture")) for i in blas if i.get("internal_api") == "openblas"})
    h = host()
    print(f"host: {h['cpu']}, {h['cores']} cores, flags {h['flags']}, OpenBLAS core(s) {cores}")
    print(f"load average at start: {os.getloadavg()}")
    print("np.cov + eigvalsh / ours: > 1 means ours is faster (median (min-max) over rounds)")
    for n, d, threads in QUICK_CASES if a.quick else CASES:
        cmd = [sys.executable, __file__, "--case", f"{n},{d},{threads}", "--rounds", str(a.rounds)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{n} x {d} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
            sys.exit(1)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"\n{r['case']}; this host's kernel: {r['kernel']}")
        for name, s in r["np_cov_over"].items():
            if name != "np_cov_eigvalsh":
                err = r["max_abs_error_over_lambda_max"].get(name)
                extra = f"   max |error| / lambda_max {err:.1e}" if err is not None else ""
                ms = 1e3 * r["seconds_median"][name]
                print(f"  np.cov / {name:13s} {fmt_ratio(s)}   ({ms:.3f} ms){extra}")
        print(f"  np.cov + eigvalsh: {1e3 * r['seconds_median']['np_cov_eigvalsh']:.3f} ms")
    n, d = (100_000, 64) if a.quick else (1_000_000, 256)
    ours, theirs = peak_extra_gib(n, d, False), peak_extra_gib(n, d, True)
    print(f"\nextra peak memory, {n:,} x {d}: ours streamed +{ours:.3f} GiB, np.cov +{theirs:.2f} GiB")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
