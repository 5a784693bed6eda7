"""Benchmark of dimcollapse.diagnostics against the baselines named in issue 2.

1. covariance_spectrum of N=50,000 x D (512, 2048) float32 vs numpy.linalg.svd of the centred float32
   matrix (compute_uv=False, the fastest numpy form). Accuracy against the float64 SVD of the same
   centred data, over eigenvalues above 1e-10 of the largest.
2. lid_mle (k=20) of N=20,000 x D=64 vs scikit-dimension's ``skdim.id.MLE`` (pointwise
   ``dimension_pw_``). skdim's pointwise MLE is (k-1) / sum_{j<k} ln(r_k / r_j); ours (SPEC 1.7) has k in
   the numerator, so ours * (k-1)/k is compared with skdim's values.
3. covariance_spectrum of 1,000,000 x 256 streamed from a generator of blocks, in a subprocess whose
   peak resident memory (VmHWM of /proc/self/status) is reported.

Prints a markdown table and writes benchmarks/results/diagnostics.json (atomically).
Usage: python benchmarks/bench_diagnostics.py [--repeats 3] [--baseline-repeats-large 1] [--threads 1]
       [--with-vectors] [--skip 512 2048 lid stream]   (partial runs merge into the JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dimcollapse.diagnostics import covariance_spectrum, lid_mle
from dimcollapse.utils.atomic import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results" / "diagnostics.json"


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any, list[float]]:
    """Median wall time of ``repeats`` calls, the last result and all times."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out, times


def planted(n: int, d: int, seed: int = 0) -> np.ndarray:
    """float32 rows with a power-law spectrum lambda_k ~ k^-2 on 3/4 of the dims, a collapsed last 1/4."""
    rng = np.random.default_rng(seed)
    lam = np.arange(1, d + 1, dtype=np.float64) ** -2.0
    lam[3 * d // 4 :] = 0.0
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = rng.standard_normal((n, d)) * np.sqrt(lam)
    return (x @ q.T + 0.5).astype(np.float32)


def bench_spectrum(d: int, repeats: int, base_repeats: int, with_vectors: bool = False) -> dict[str, Any]:
    z = planted(50_000, d)
    t_ours, ours, t_all = timed(lambda: covariance_spectrum(z), repeats)
    zc = z - z.mean(0, dtype=np.float64).astype(np.float32)
    t_svd, s32, t_svd_all = timed(lambda: np.linalg.svd(zc, compute_uv=False), base_repeats)
    t_uv = None
    if with_vectors:  # the common call that also returns U (N x D) and V, as in papers' scripts
        t_uv = timed(lambda: np.linalg.svd(zc, full_matrices=False)[1], 1)[0]
    z64 = z.astype(np.float64)
    z64 -= z64.mean(0)
    # floor of any float64-accumulating method: the bare Gram product (BLAS syrk) of the centred data
    t_floor = timed(lambda: z64.T @ z64, base_repeats)[0]
    t_ref = time.perf_counter()
    s64 = np.linalg.svd(z64, compute_uv=False)
    t_ref = time.perf_counter() - t_ref
    ref = s64**2 / len(z)
    keep = ref > 1e-10 * ref[0]
    rel = np.abs(ours[: ref.size][keep] - ref[keep]) / ref[keep]
    rel32 = np.abs((s32.astype(np.float64) ** 2 / len(z))[keep] - ref[keep]) / ref[keep]
    return {
        "case": f"spectrum 50,000 x {d} float32",
        "ours_s": t_ours,
        "ours_all_s": t_all,
        "baseline": "numpy.linalg.svd(centred float32, compute_uv=False)",
        "baseline_s": t_svd,
        "baseline_all_s": t_svd_all,
        "svd_float64_s": t_ref,
        "svd_with_vectors_s": t_uv,
        "speedup_vs_svd_with_vectors": None if t_uv is None else t_uv / t_ours,
        "speedup": t_svd / t_ours,
        "speedup_vs_float64_svd": t_ref / t_ours,
        "syrk_float64_floor_s": t_floor,
        "max_speedup_at_floor": t_svd / t_floor,
        "n_eigs_compared": int(keep.sum()),
        "max_rel_diff": float(rel.max()),
        "float32_svd_max_rel_diff": float(rel32.max()),
    }


def bench_lid(repeats: int) -> dict[str, Any]:
    import skdim
    import torch

    k = 20
    rng = np.random.default_rng(1)
    # 20,000 points of a 16-dim curved manifold plus small noise, in R^64 (embedding-like data)
    t = rng.uniform(-1, 1, size=(20_000, 16))
    feats = np.concatenate([t, np.sin(3 * t), t**2, np.cos(2 * t)], axis=1)
    z = (feats @ rng.standard_normal((64, 64)) / 8 + 0.01 * rng.standard_normal((20_000, 64))).astype(
        np.float32
    )
    t_ours, ours, t_all = timed(lambda: lid_mle(z, k=k), repeats)
    t_sk, sk, t_sk_all = timed(lambda: skdim.id.MLE().fit(z, n_neighbors=k).dimension_pw_, repeats)
    zt = torch.from_numpy(z)
    sq = (zt * zt).sum(1)

    def distance_products() -> None:  # floor of exact brute force: the N x N distance GEMMs alone
        for start in range(0, len(zt), 2048):
            torch.addmm(sq[None, :], zt[start : start + 2048], zt.T, beta=1.0, alpha=-2.0)

    t_floor = timed(distance_products, repeats)[0]
    ours_sk = np.asarray(ours) * (k - 1) / k
    rel = np.abs(ours_sk - sk) / np.abs(sk)
    return {
        "case": "LID MLE k=20, 20,000 x 64 float32",
        "ours_s": t_ours,
        "ours_all_s": t_all,
        "baseline": f"skdim.id.MLE().fit(n_neighbors=20) (scikit-dimension {skdim.__version__})",
        "baseline_s": t_sk,
        "baseline_all_s": t_sk_all,
        "speedup": t_sk / t_ours,
        "distance_gemm_floor_s": t_floor,
        "max_speedup_at_floor": t_sk / t_floor,
        "median_rel_diff": float(np.median(rel)),
        "max_rel_diff": float(rel.max()),
        "ours_gmean": float(np.exp(np.mean(np.log(np.asarray(ours))))),
    }


_STREAM_CHILD = """
import resource, sys, time, json
import numpy as np
from dimcollapse.diagnostics import covariance_spectrum
n, d, b = 1_000_000, 256, 20_000
scales = np.linspace(2.0, 0.01, d)
def blocks():
    rng = np.random.default_rng(0)
    for _ in range(n // b):
        yield (rng.standard_normal((b, d), dtype=np.float32) * scales.astype(np.float32))
t = time.perf_counter()
eig = covariance_spectrum(blocks())
t = time.perf_counter() - t
rel = float(np.max(np.abs(eig - np.sort(scales**2)[::-1]) / np.sort(scales**2)[::-1]))
# VmHWM: this process image's own peak RSS. (ru_maxrss survives execve, so in a child of a big parent it
# would report the parent's size at fork time.)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
peak = (int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 2**20
print(json.dumps({"seconds": t, "peak_gib": peak, "max_rel_dev_from_planted": rel}))
"""


def bench_stream() -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _STREAM_CHILD], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update({"case": "spectrum 1,000,000 x 256 float32 streamed (20k-row batches)", "limit_gib": 3.0})
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-repeats-large", type=int, default=1, help="numpy SVD repeats at D=2048")
    ap.add_argument("--skip", nargs="*", default=[], choices=["512", "2048", "lid", "stream"])
    ap.add_argument("--with-vectors", action="store_true", help="also time svd(full_matrices=False)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP/torch threads for ours and baselines")
    args = ap.parse_args()
    # The same thread count for every contender. On a shared, oversubscribed machine multi-threaded
    # OpenBLAS is erratic (a 512 x 512 eigh took 7-10 s with 2 threads vs 0.15 s with 1).
    import torch
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)
    torch.set_num_threads(args.threads)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    rows: list[dict[str, Any]] = []
    jobs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("512", lambda: bench_spectrum(512, args.repeats, args.repeats, args.with_vectors)),
        ("2048", lambda: bench_spectrum(2048, args.repeats, args.baseline_repeats_large, args.with_vectors)),
        ("lid", lambda: bench_lid(args.repeats)),
        ("stream", bench_stream),
    ]
    for name, job in jobs:
        if name in args.skip:
            continue
        rows.append(job())
        print(f"[{name}] {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    print("| case | ours (s) | baseline (s) | speedup | accuracy |")
    print("| --- | ---: | ---: | ---: | --- |")
    for r in rows:
        if "peak_gib" in r:
            print(
                f"| {r['case']} | {r['seconds']:.1f} | - | - | peak RSS {r['peak_gib']:.2f} GiB (limit 3) |"
            )
        elif "median_rel_diff" in r:
            print(
                f"| {r['case']} | {r['ours_s']:.2f} | {r['baseline_s']:.2f} | {r['speedup']:.1f}x | "
                f"median rel diff {r['median_rel_diff']:.1e} vs skdim |"
            )
        else:
            print(
                f"| {r['case']} | {r['ours_s']:.2f} | {r['baseline_s']:.2f} | {r['speedup']:.1f}x | "
                f"max rel diff {r['max_rel_diff']:.1e} over {r['n_eigs_compared']} eigenvalues |"
            )
    # merge with rows of earlier partial runs (e.g. --skip 2048 then --skip 512 lid stream)
    previous: list[dict[str, Any]] = []
    if RESULTS.exists():
        try:
            previous = json.loads(RESULTS.read_text()).get("rows", [])
        except (OSError, ValueError):
            previous = []
    cases = {r["case"] for r in rows}
    merged = [r for r in previous if r.get("case") not in cases] + rows
    meta = {"benchmark": "diagnostics", "repeats": args.repeats, "threads": args.threads, "rows": merged}
    atomic_write_json(RESULTS, meta)
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
