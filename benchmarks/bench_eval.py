"""The run's final evaluation at CIFAR-100 size and its memory at ImageNet size (issue 25).

    python benchmarks/bench_eval.py [--quick] [--cases eval,compare,real,imagenet_knn,imagenet_probe]

Each case runs in its own process (its peak RSS is its memory):
- ``eval``: what a run's evaluation does after encoding, on 47,952 x 512 training / 10,000 test features
  (100 classes): the sharded kNN (k = 20 and 200, temperature-weighted) + the L-BFGS probe in float32
  (100 iterations at most, tolerance 1e-9): wall and CPU seconds, peak RSS. Target: under 30 s.
  ``eval_all_iterations``: the same with no early stop (all 100 iterations: the worst case).
- ``compare``: interleaved rounds in one process (medians): our kNN (float32 / float16 bank), the old
  exact kNN, faiss's exact inner-product index (IndexFlatIP, same device, same votes); the L-BFGS probe in
  float32 against float64 (the old default): seconds, accuracies, iterations.
- ``real``: the same probe and kNN comparisons on real images: Fashion-MNIST (60,000 / 10,000) through a
  fixed random ReLU layer to 512 features (the accuracy differences float32 vs float64, float16 vs float32
  features kept for the kNN bank and the probe: ``eval.knn_storage``).
- ``imagenet_knn`` / ``imagenet_probe``: the synthetic ImageNet case (1.28M x 2048, float16, 1000
  classes) scaled down by --scale (default 1/64) in rows: peak RSS above the features measured against
  the bound of knn_eval.py / probe_lbfgs.py at that size, and the bound computed for the full size.
Features are Gaussian class clusters (seeded) unless stated. Writes results/bench_eval.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save

FULL = (47_952, 10_000, 512, 100)
QUICK = (2_000, 500, 64, 10)
IMAGENET = (1_281_167, 50_000, 2048, 1000)
GIB = 2**30


def features(n_train: int, n_test: int, dim: int, classes: int) -> tuple[torch.Tensor, ...]:
    """Class means on a sphere plus isotropic noise: a task with kNN / linear accuracy well below 100%."""
    g = torch.Generator().manual_seed(0)
    means = torch.randn(classes, dim, generator=g)
    y = torch.randint(0, classes, (n_train + n_test,), generator=g)
    x = means[y] * (2.0 / dim**0.5) + torch.randn(n_train + n_test, dim, generator=g)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def rss_gib() -> float:
    """Peak resident memory of this process so far (GiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def knn(
    xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor, c: int, storage: str
) -> Any:
    """The run's kNN: one process's bank (rows in order), k 20 and 200, T 0.07."""
    from dimcollapse.training.knn_eval import Bank, sharded_knn_accuracies

    bank = Bank.of(xtr, ytr, torch.arange(len(ytr)), storage)
    return sharded_knn_accuracies(bank, xte, yte, (20, 200), 0.07, c)


def faiss_knn(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor, c: int) -> Any:
    """faiss's exact inner-product search of the unit rows (k 200), the same votes and accuracies."""
    import faiss
    import torch.nn.functional as F

    from dimcollapse.training.knn_eval import vote_scores

    index = faiss.IndexFlatIP(xtr.shape[1])
    index.add(F.normalize(xtr.float(), dim=1).numpy())
    sims, idx = index.search(F.normalize(xte.float(), dim=1).numpy(), 200)
    scores = vote_scores(torch.from_numpy(sims), ytr[torch.from_numpy(idx)], (20, 200), c, 0.07)
    return {k: float((s.argmax(1) == yte).float().mean()) for k, s in scores.items()}


def probe(
    xtr: torch.Tensor,
    ytr: torch.Tensor,
    xte: torch.Tensor,
    yte: torch.Tensor,
    c: int,
    dtype: str,
    tol: float = 1e-9,
) -> Any:
    """The run's L-BFGS probe (100 iterations at most, weight decay 1e-4; ``tol`` 0: all 100)."""
    from dimcollapse.training.probe_lbfgs import LBFGSProbeSettings, fit_lbfgs_probe, lbfgs_probe_topk

    p = fit_lbfgs_probe(xtr, ytr, c, LBFGSProbeSettings(100, 1e-4, dtype, tol))
    return {
        "top1": lbfgs_probe_topk(p, xte, yte)[1],
        "iterations": p.iterations,
        "evaluations": p.evaluations,
    }


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    t, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - cpu, out


def case_eval(sizes: tuple[int, int, int, int], tol: float = 1e-9) -> dict[str, Any]:
    xtr, ytr, xte, yte = features(*sizes)
    c = sizes[3]
    before = rss_gib()
    w1, c1, acc = timed(lambda: knn(xtr, ytr, xte, yte, c, "float32"))
    w2, c2, lin = timed(lambda: probe(xtr, ytr, xte, yte, c, "float32", tol))
    return {
        "seconds": w1 + w2, "cpu_seconds": c1 + c2, "knn_seconds": w1, "probe_seconds": w2,
        "knn_cpu_s": c1, "probe_cpu_s": c2,
        "knn_k200_top1": acc[200][0], "knn_k20_top1": acc[20][0], "linear_top1": lin["top1"],
        "probe_iterations": lin["iterations"], "probe_evaluations": lin["evaluations"],
        "peak_rss_gib": rss_gib(), "features_rss_gib": before,
    }  # fmt: skip


def rounds(jobs: dict[str, Callable[[], Any]], n: int) -> dict[str, Any]:
    """Interleaved rounds (job after job each round): median wall and CPU seconds (all threads; on a
    loaded host the steadier figure), the last result of each."""
    times: dict[str, list[float]] = {k: [] for k in jobs}
    cpus: dict[str, list[float]] = {k: [] for k in jobs}
    results: dict[str, Any] = {}
    for _ in range(n):
        for name, fn in jobs.items():
            w, cpu, results[name] = timed(fn)
            times[name].append(w)
            cpus[name].append(cpu)
    return {
        k: {"median_s": statistics.median(v), "median_cpu_s": statistics.median(cpus[k]), "seconds": v,
            "result": results[k]}
        for k, v in times.items()
    }  # fmt: skip


def case_compare(sizes: tuple[int, int, int, int], n: int) -> dict[str, Any]:
    from dimcollapse.training.evaluation import knn_accuracies

    xtr, ytr, xte, yte = features(*sizes)
    c = sizes[3]
    jobs: dict[str, Callable[[], Any]] = {
        "knn_float32": lambda: knn(xtr, ytr, xte, yte, c, "float32"),
        "knn_float16": lambda: knn(xtr, ytr, xte, yte, c, "float16"),
        "knn_faiss_flat_ip": lambda: faiss_knn(xtr, ytr, xte, yte, c),
        "knn_old_exact": lambda: knn_accuracies(xtr, ytr, xte, yte, (20, 200), 0.07, c),
        "lbfgs_float32": lambda: probe(xtr, ytr, xte, yte, c, "float32"),
        "lbfgs_float64": lambda: probe(xtr, ytr, xte, yte, c, "float64"),
    }
    out = rounds(jobs, n)
    for key, (a, b) in {"faiss_over_ours": ("knn_faiss_flat_ip", "knn_float32"),
                        "float64_over_float32": ("lbfgs_float64", "lbfgs_float32")}.items():  # fmt: skip
        out[f"ratio_{key}"] = out[a]["median_s"] / out[b]["median_s"]
        out[f"cpu_ratio_{key}"] = out[a]["median_cpu_s"] / out[b]["median_cpu_s"]
    return out


def fashion_features(quick: bool) -> tuple[torch.Tensor, ...]:
    """Fashion-MNIST pixels through a fixed random ReLU layer (784 -> 512): real images, 10 classes."""
    root = Path("/usr/share/datasets/fashion-mnist")

    def read(name: str, offset: int) -> torch.Tensor:
        with gzip.open(root / name) as fh:
            return torch.frombuffer(bytearray(fh.read()[offset:]), dtype=torch.uint8)

    xtr = read("train-images-idx3-ubyte.gz", 16).view(-1, 784).float() / 255
    xte = read("t10k-images-idx3-ubyte.gz", 16).view(-1, 784).float() / 255
    ytr, yte = read("train-labels-idx1-ubyte.gz", 8).long(), read("t10k-labels-idx1-ubyte.gz", 8).long()
    if quick:
        xtr, ytr, xte, yte = xtr[:2000], ytr[:2000], xte[:500], yte[:500]
    w = torch.randn(784, 512, generator=torch.Generator().manual_seed(0)) / 784**0.5
    return torch.relu(xtr @ w), ytr, torch.relu(xte @ w), yte


def case_real(quick: bool) -> dict[str, Any]:
    xtr, ytr, xte, yte = fashion_features(quick)
    out: dict[str, Any] = {"rows": [len(ytr), len(yte)], "dim": xtr.shape[1]}
    for dtype in ("float32", "float64"):
        w, cpu, res = timed(lambda dtype=dtype: probe(xtr, ytr, xte, yte, 10, dtype))
        out[f"lbfgs_{dtype}"] = {**res, "seconds": w, "cpu_seconds": cpu}
    out["lbfgs_float32_on_float16_features"] = probe(xtr.half(), ytr, xte, yte, 10, "float32")
    for storage in ("float32", "float16"):
        out[f"knn_{storage}"] = {str(k): v for k, v in knn(xtr, ytr, xte, yte, 10, storage).items()}
    out["probe_top1_float64_minus_float32_points"] = 100 * (
        out["lbfgs_float64"]["top1"] - out["lbfgs_float32"]["top1"]
    )
    return out


def knn_bound(n: int, n_test: int, dim: int, storage_bytes: int, block: int = 1024) -> float:
    """knn_eval.py's bound (bytes) for one process: features kept + bank (storage dtype), test features
    (float32), a block's similarities and one float32 bank tile (each <= TILE_BYTES)."""
    from dimcollapse.training.knn_eval import TILE_BYTES

    return 2 * n * dim * storage_bytes + n_test * dim * 4 + 2 * TILE_BYTES + block * 200 * 24


def probe_bound(n: int, dim: int, classes: int, storage_bytes: int, history: int = 20) -> float:
    """probe_lbfgs.py's bound (bytes) for one process: features kept (storage dtype), one chunk of
    standardised float32 rows (<= CHUNK_BYTES), its logits, softmax and gradient (3 x rows x C float32),
    L-BFGS's history (2 x history + 4 copies of W)."""
    from dimcollapse.training.probe_lbfgs import CHUNK_BYTES

    rows = min(n, CHUNK_BYTES // (dim * 4))
    return (
        n * dim * storage_bytes
        + min(n * dim * 4, CHUNK_BYTES)
        + 3 * rows * classes * 4
        + (2 * history + 4) * (dim + 1) * classes * 4
    )


def imagenet_features(scale: float) -> tuple[torch.Tensor, ...]:
    n, n_test, dim, classes = IMAGENET
    n, n_test = int(n * scale), max(200, int(n_test * scale))
    g = torch.Generator().manual_seed(0)
    x = torch.empty(n + n_test, dim, dtype=torch.float16)
    y = torch.randint(0, classes, (n + n_test,), generator=g)
    for s in range(0, n + n_test, 8192):  # float16 from the start: no float32 copy of the whole set
        x[s : s + 8192] = torch.randn(min(8192, n + n_test - s), dim, generator=g).half()
    return x[:n], y[:n], x[n:].float(), y[n:]


def case_imagenet(which: str, scale: float) -> dict[str, Any]:
    xtr, ytr, xte, yte = imagenet_features(scale)
    n, dim, c = xtr.shape[0], xtr.shape[1], IMAGENET[3]
    base = rss_gib()
    if which == "knn":
        from dimcollapse.training.knn_eval import Bank, sharded_knn_accuracies

        bank = Bank.of(xtr, ytr, torch.arange(n), "float16")
        w, _, _ = timed(lambda: sharded_knn_accuracies(bank, xte, yte, (20, 200), 0.07, c))
        bound_here, full = knn_bound(n, len(yte), dim, 2), knn_bound(IMAGENET[0], IMAGENET[1], dim, 2)
    else:
        from dimcollapse.training.probe_lbfgs import LBFGSProbeSettings, fit_lbfgs_probe

        w, _, _ = timed(lambda: fit_lbfgs_probe(xtr, ytr, c, LBFGSProbeSettings(2, 1e-4, "float32")))
        bound_here, full = probe_bound(n, dim, c, 2), probe_bound(IMAGENET[0], dim, c, 2)
    features_gib = (xtr.numel() * 2 + xte.numel() * 4) / GIB
    return {
        "rows": n, "test_rows": len(yte), "seconds": w, "features_gib": features_gib,
        "peak_rss_gib": rss_gib(), "peak_above_start_gib": rss_gib() - base,
        "bound_here_gib": bound_here / GIB, "bound_full_imagenet_one_process_gib": full / GIB,
        "bound_full_imagenet_per_process_of_8_gib": (
            knn_bound(IMAGENET[0] // 8, IMAGENET[1] // 8, dim, 2) if which == "knn"
            else probe_bound(IMAGENET[0] // 8, dim, c, 2)
        ) / GIB,
    }  # fmt: skip


def run_case(case: str, quick: bool, scale: float) -> dict[str, Any]:
    sizes = QUICK if quick else FULL
    if case == "eval":
        return case_eval(sizes)
    if case == "eval_all_iterations":  # the worst case: no early stop, all 100 L-BFGS iterations
        return case_eval(sizes, tol=0.0)
    if case == "compare":
        return case_compare(sizes, 1 if quick else 2)
    if case == "real":
        return case_real(quick)
    if case in ("imagenet_knn", "imagenet_probe"):
        return case_imagenet(case.split("_")[1], scale / 16 if quick else scale)
    raise SystemExit(f"error: unknown case '{case}'")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cases", default="eval,eval_all_iterations,compare,real,imagenet_knn,imagenet_probe")
    ap.add_argument("--scale", type=float, default=1 / 64, help="rows of the ImageNet case (fraction)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_case(args.one, args.quick, args.scale)))
        return
    out: dict[str, Any] = {"sizes": dict(zip(("train", "test", "dim", "classes"), FULL, strict=True))}
    for case in args.cases.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--one",
            case,
            "--threads",
            str(args.threads),
            "--scale",
            str(args.scale),
        ]
        res = subprocess.run(
            cmd + (["--quick"] if args.quick else []), capture_output=True, text=True, check=True
        )
        out[case] = json.loads(res.stdout.strip().splitlines()[-1])
        print(case, json.dumps(out[case]), flush=True)
    print(f"wrote {save('bench_eval', out, args.quick)}")


if __name__ == "__main__":
    main()
