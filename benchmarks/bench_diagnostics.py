"""Diagnostics benchmarks: our covariance spectrum and LID against what an expert would write (issue 15).

Every comparison runs in its own process, all contenders interleaved round by round with the same thread
count; each ratio is taken within a round (min / median / max over rounds).

- spectrum: ``covariance_spectrum`` vs ``np.linalg.eigvalsh(np.cov(Z.T))``, ``np.linalg.svd`` (float32,
  centred, no U/V), ``torch.linalg.svdvals``, scikit-learn ``PCA(svd_solver="covariance_eigh")``; the floor
  is the bare float64 Gram product (BLAS syrk) of the same data, already converted and centred. Accuracy:
  max relative error over eigenvalues above 1e-10 of the largest, against the float64 SVD.
- stream: covariance_spectrum of 1,000,000 x 256 from a generator of blocks; extra peak memory of the call.
- lid: lid_mle (k=20) exact vs scikit-dimension, sklearn NearestNeighbors (+ our MLE formula), faiss
  IndexFlatL2, and approximate faiss HNSW / IVF (recall and LID error measured on an exact sample).
- knn_64 / knn_64_2t / knn_128: exact LID (search + MLE) with our tiled search vs faiss IndexFlatL2 at
  20,000 x 64 (1 and 2 threads) and 100,000 x 128 (2 threads); values must agree.
- lid_1m: geometric-mean LID of 1,000,000 x 128 from 5,000 random rows with exact neighbours among all
  rows (``lid_sampled``; target < 60 s and within 1%, stated as the sampling standard error), on Gaussian
  data of intrinsic dimension 16 and on an embedding-like set (clustered, anisotropic, unit norm).

python benchmarks/bench_diagnostics.py [--quick] [--rounds 5] [--only spectrum_512 lid ...]
Writes benchmarks/results/diagnostics.json (results/quick/ with --quick).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_ratio, host, interleaved, load_cases, ratio_stats, save

K = 20


def set_threads(n: int) -> None:
    """The same BLAS / OpenMP / torch / faiss thread count for every contender."""
    import torch
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    torch.set_num_threads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass


def planted(n: int, d: int, seed: int = 0) -> np.ndarray:
    """float32 rows, spectrum lambda_k ~ k^-2 on 3/4 of the dims, a collapsed last quarter, offset 0.5."""
    rng = np.random.default_rng(seed)
    lam = np.arange(1, d + 1, dtype=np.float64) ** -2.0
    lam[3 * d // 4 :] = 0.0
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return ((rng.standard_normal((n, d)) * np.sqrt(lam)) @ q.T + 0.5).astype(np.float32)


def manifold(n: int, d: int, seed: int = 1) -> np.ndarray:
    """n points of a curved 16-dim manifold mapped linearly into R^d, plus 1% noise (float32)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(-1, 1, size=(n, 16))
    f = np.concatenate([t, np.sin(3 * t), t**2, np.cos(2 * t)], axis=1)
    w = rng.standard_normal((64, d)) / 8
    return (f @ w + 0.01 * rng.standard_normal((n, d))).astype(np.float32)


def spectrum_case(n: int, d: int, threads: int, rounds: int) -> dict[str, Any]:
    """Interleaved spectrum contenders on planted data; ratios to ours and to the syrk floor."""
    import torch
    from sklearn.decomposition import PCA

    from dimcollapse.diagnostics import covariance_spectrum

    z = planted(n, d)
    z64 = z.astype(np.float64)
    z64 -= z64.mean(0)
    zc = z - z.mean(0, dtype=np.float64).astype(np.float32)
    ztc = torch.from_numpy(zc)
    jobs: dict[str, Callable[[], Any]] = {
        "floor_syrk_float64": lambda: z64.T @ z64,
        "ours": lambda: covariance_spectrum(z),
        "np_cov_eigvalsh": lambda: np.linalg.eigvalsh(np.cov(z.T))[::-1],
        "numpy_svd_f32": lambda: np.linalg.svd(zc, compute_uv=False) ** 2 / n,
        "torch_svdvals_f32": lambda: (torch.linalg.svdvals(ztc) ** 2 / n).numpy(),
        "sklearn_pca_cov_eigh": lambda: PCA(svd_solver="covariance_eigh").fit(z).explained_variance_,
    }
    clock = time.process_time if threads == 1 else time.perf_counter
    times = interleaved(jobs, rounds, clock)
    ref = np.linalg.svd(z64, compute_uv=False) ** 2 / n
    keep = ref > 1e-10 * ref[0]
    accuracy = {}
    for name, fn in jobs.items():
        if name == "floor_syrk_float64":
            continue
        got = np.asarray(fn(), dtype=np.float64)
        if name == "sklearn_pca_cov_eigh" or name == "np_cov_eigvalsh":
            got = got * (n - 1) / n  # both divide by N - 1
        accuracy[name] = float(np.max(np.abs(got[: ref.size][keep] - ref[keep]) / ref[keep]))
    return {
        "case": f"spectrum {n:,} x {d} float32, {threads} thread(s)",
        "clock": "process CPU time" if threads == 1 else "wall",
        "seconds_median": {k: float(np.median(v)) for k, v in times.items()},
        "ours_over_floor": ratio_stats(times["ours"], times["floor_syrk_float64"]),
        "other_over_ours": {k: ratio_stats(v, times["ours"]) for k, v in times.items() if k not in ("ours",)},
        "max_rel_error": accuracy,
        "n_eigs_compared": int(keep.sum()),
    }


_STREAM_CHILD = """
import json, sys, time
import numpy as np
sys.path.insert(0, {bench!r})
from bench_diagnostics import set_threads
set_threads(1)
from dimcollapse.diagnostics import covariance_spectrum
n, d, b = {n}, {d}, 20_000
scales = np.linspace(2.0, 0.01, d).astype(np.float32)
def blocks():
    rng = np.random.default_rng(0)
    for _ in range(n // b):
        yield rng.standard_normal((b, d), dtype=np.float32) * scales + 3.0
def status(key):
    return [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key)][0] / 2**20
covariance_spectrum(np.ones((10, d)))  # imports and BLAS warm-up before the baseline
before = status("VmRSS:")
t = time.perf_counter()
eig = covariance_spectrum(blocks())
t = time.perf_counter() - t
planted = np.sort(scales.astype(np.float64) ** 2)[::-1]
print(json.dumps({{"seconds": t, "peak_extra_gib": status("VmHWM:") - before,
                  "max_rel_dev_from_planted": float(np.max(np.abs(eig - planted) / planted))}}))
"""


def stream_case(n: int, d: int) -> dict[str, Any]:
    """Streamed spectrum in a fresh process; extra peak RSS over the process's size before the call."""
    code = _STREAM_CHILD.format(bench=str(Path(__file__).resolve().parent), n=n, d=d)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["case"] = f"spectrum {n:,} x {d} float32 streamed in 20k-row blocks"
    return res


def _sklearn_lid(z: np.ndarray) -> np.ndarray:
    import torch
    from sklearn.neighbors import NearestNeighbors

    from dimcollapse.diagnostics import lid_from_distances

    dist, _ = NearestNeighbors(n_neighbors=K + 1).fit(z).kneighbors(z)
    return lid_from_distances(torch.from_numpy(dist[:, 1:])).numpy()


def lid_case(n: int, d: int, threads: int, rounds: int) -> dict[str, Any]:
    """Interleaved LID contenders; approximate engines also report recall and LID error."""
    from dimcollapse.diagnostics import KnnBackend, lid_estimate, lid_mle

    z = manifold(n, d)
    jobs: dict[str, Callable[[], Any]] = {"ours_exact": lambda: lid_mle(z, k=K)}
    try:
        import skdim

        jobs["skdim_mle"] = lambda: skdim.id.MLE().fit(z, n_neighbors=K).dimension_pw_ * K / (K - 1)
    except ImportError:
        pass
    jobs["sklearn_nn"] = lambda: _sklearn_lid(z)
    approx: dict[str, KnnBackend] = {}
    try:
        import faiss  # noqa: F401

        jobs["faiss_flat"] = lambda: lid_mle(z, k=K, backend="faiss-flat")
        approx = {"faiss_hnsw": KnnBackend("faiss-hnsw"), "faiss_ivf": KnnBackend("faiss-ivf", nprobe=16)}
        for name, spec in approx.items():
            jobs[name] = lambda spec=spec: lid_mle(z, k=K, backend=spec)
    except ImportError:
        pass
    times = interleaved(jobs, rounds)
    exact = np.asarray(jobs["ours_exact"]())
    agreement = {}
    for name, fn in jobs.items():
        if name not in approx and name != "ours_exact":
            got = np.asarray(fn())
            agreement[name] = float(np.median(np.abs(got - exact) / exact))
    quality = {}
    for name, spec in approx.items():
        est = lid_estimate(z, k=K, backend=spec, sample=min(1000, n))
        quality[name] = {
            "recall": est.recall,
            "gmean_rel_error": est.gmean_rel_error,
            "median_rel_error": est.median_rel_error,
            "sample": est.sample,
        }
    return {
        "case": f"LID MLE k={K}, {n:,} x {d} float32, {threads} thread(s)",
        "seconds_median": {k: float(np.median(v)) for k, v in times.items()},
        "other_over_ours": {k: ratio_stats(v, times["ours_exact"]) for k, v in times.items()},
        "median_rel_diff_vs_ours": agreement,
        "approximate_quality": quality,
    }


def knn_case(n: int, d: int, threads: int, rounds: int) -> dict[str, Any]:
    """Exact LID (k-NN search + MLE) with our tiled search vs faiss IndexFlatL2, interleaved; same values."""
    from dimcollapse.diagnostics import lid_mle

    z = manifold(n, d)
    jobs: dict[str, Callable[[], Any]] = {
        "ours_exact": lambda: lid_mle(z, k=K),
        "faiss_flat": lambda: lid_mle(z, k=K, backend="faiss-flat"),
    }
    clock = time.process_time if threads == 1 else time.perf_counter
    times = interleaved(jobs, rounds, clock)
    diff = float(np.max(np.abs(jobs["ours_exact"]() - jobs["faiss_flat"]()) / jobs["faiss_flat"]()))
    return {
        "case": f"exact LID MLE k={K}, {n:,} x {d} float32, {threads} thread(s)",
        "clock": "process CPU time" if threads == 1 else "wall",
        "seconds_median": {k: float(np.median(v)) for k, v in times.items()},
        "other_over_ours": {"faiss_flat": ratio_stats(times["faiss_flat"], times["ours_exact"])},
        "max_rel_diff_vs_faiss": diff,
    }


def known_id(n: int, d: int, intrinsic: int = 16, seed: int = 2) -> np.ndarray:
    """n standard Gaussian points of a random 16-dim subspace of R^d (float32): intrinsic dimension 16."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((d, intrinsic)))
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 100_000):  # chunked: no n x d float64 temporary
        out[s : s + 100_000] = rng.standard_normal((min(100_000, n - s), intrinsic)) @ basis.T
    return out


def embedding_like(n: int, d: int, clusters: int = 1000, seed: int = 3) -> np.ndarray:
    """Unit-norm rows around ``clusters`` centres with a power-law (j^-1) within-cluster spectrum (float32),
    the shape of SSL embeddings: clustered, anisotropic, on the sphere."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    scale = 0.7 * np.arange(1, d + 1) ** -0.5  # standard deviations: variances ~ j^-1
    rot, _ = np.linalg.qr(rng.standard_normal((d, d)))
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        x = centres[rng.integers(0, clusters, m)] + (rng.standard_normal((m, d)) * scale) @ rot.T
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def lid_1m_case(n: int, d: int, sample: int) -> dict[str, Any]:
    """Geometric-mean LID of n x d from ``sample`` random rows with exact neighbours among all n rows
    (``lid_sampled``), timed, on data of known intrinsic dimension and on an embedding-like set."""
    from dimcollapse.diagnostics import lid_sampled

    out: dict[str, Any] = {
        "case": f"LID MLE k={K} of {n:,} x {d} float32, exact k-NN of {sample:,} random rows, 2 threads",
        "target": "< 60 s, gmean LID within 1% (stated as the sampling standard error and 95% interval)",
        "sets": {},
    }
    for name, make in (("gaussian_16d", known_id), ("embedding_like", embedding_like)):
        z = make(n, d)
        t = time.perf_counter()
        est = lid_sampled(z, k=K, sample=sample)
        seconds = time.perf_counter() - t
        out["sets"][name] = {
            "seconds": seconds,
            "gmean": est.gmean,
            "rel_se": est.rel_se,
            "ci95": list(est.ci95),
            "sample": int(est.rows.size),
            "n_zero": est.n_zero,
            "intrinsic_dimension": 16 if name == "gaussian_16d" else None,
        }
        del z
    return out


def cases(quick: bool, rounds: int) -> dict[str, Callable[[], dict[str, Any]]]:
    """Name -> one comparison (each runs in its own process)."""
    if quick:
        return {
            "spectrum_512": lambda: spectrum_case(3000, 64, 1, 2),
            "spectrum_256": lambda: spectrum_case(4000, 32, 2, 2),
            "stream": lambda: stream_case(100_000, 64),
            "lid": lambda: lid_case(2000, 16, 2, 2),
            "knn_64": lambda: knn_case(3000, 16, 1, 2),
            "lid_1m": lambda: lid_1m_case(20_000, 16, 200),
        }
    return {
        "spectrum_512": lambda: spectrum_case(50_000, 512, 1, rounds),
        "spectrum_256": lambda: spectrum_case(200_000, 256, 2, rounds),
        "stream": lambda: stream_case(1_000_000, 256),
        "lid": lambda: lid_case(20_000, 64, 2, rounds),
        "knn_64": lambda: knn_case(20_000, 64, 1, rounds),
        "knn_64_2t": lambda: knn_case(20_000, 64, 2, rounds),
        "knn_128": lambda: knn_case(100_000, 128, 2, rounds),
        "lid_1m": lambda: lid_1m_case(1_000_000, 128, 5000),
    }


def report(rows: dict[str, dict[str, Any]]) -> None:
    """Print every ratio with min/median/max."""
    for name, r in rows.items():
        print(f"\n### {name}: {r['case']}")
        if "ours_over_floor" in r:
            print(f"ours / floor (float64 syrk): {fmt_ratio(r['ours_over_floor'])}")
        for other, s in r.get("other_over_ours", {}).items():
            err = r.get("max_rel_error", {}).get(other)
            extra = f"   max rel error {err:.1e}" if err is not None else ""
            print(f"{other} / ours: {fmt_ratio(s)}{extra}")
        if "max_rel_diff_vs_faiss" in r:
            print(f"max relative LID difference vs faiss flat: {r['max_rel_diff_vs_faiss']:.1e}")
        for other, q in r.get("approximate_quality", {}).items():
            print(f"{other}: recall {q['recall']:.4f}, gmean LID error {q['gmean_rel_error']:.2%}")
        for set_name, v in r.get("sets", {}).items():
            lo, hi = v["ci95"]
            print(
                f"{set_name}: {v['seconds']:.1f} s, gmean LID {v['gmean']:.3f} (standard error "
                f"{v['rel_se']:.2%}, 95% interval {lo:.3f}-{hi:.3f}), sample {v['sample']:,}"
            )
        for key in ("seconds", "peak_extra_gib", "recall", "gmean_rel_error"):
            if key in r:
                print(f"{key}: {r[key]}")


def main() -> None:
    """Run each comparison in a child process (or one with --case) and collect the results."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case here
    a = ap.parse_args()
    table = cases(a.quick, a.rounds)
    if a.case:
        threads = 1 if a.case in ("spectrum_512", "knn_64") else 2
        set_threads(threads)
        print(json.dumps(table[a.case]()))
        return
    rows: dict[str, dict[str, Any]] = {}
    for name in a.only or list(table):
        cmd = [sys.executable, __file__, "--case", name, "--rounds", str(a.rounds)]
        out = subprocess.run([*cmd, *(["--quick"] if a.quick else [])], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{name} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
    report(rows)
    previous = load_cases("diagnostics", a.quick)  # partial runs (--only) keep the other cases
    merged = {**previous, **{k: {**v, "host": host()} for k, v in rows.items()}}
    path = save("diagnostics", {"benchmark": "diagnostics", "cases": merged}, a.quick)
    print(f"\nwrote {path}")
    if len(rows) < len(a.only or table):
        sys.exit(1)


if __name__ == "__main__":
    main()
