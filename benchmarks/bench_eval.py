"""Evaluation of a CIFAR-100-sized feature set (issue 25): 47,952 x 512 training features, 10,000 test
features, 100 classes; each case in its own process (peak RSS of that process = its memory).

    python benchmarks/bench_eval.py [--quick] [--cases knn_old,knn,...]

Cases: ``knn_old`` the exact kNN of training/evaluation.py (k = 20 and 200), ``knn`` / ``knn_f16`` the
tiled device kNN of training/knn_eval.py with a float32 / float16 bank, ``sgd`` the papers' SGD probe
(100 epochs, lr 0.1, batch 256, cosine) on the precomputed features, ``lbfgs`` the fast-CPU L-BFGS probe
(100 iterations, float64; ``lbfgs32`` the same in float32). Features: Gaussian class clusters (seeded).
Reports wall seconds and CPU seconds (all threads; on a shared, loaded host the CPU time is the steadier
figure). Writes results/bench_eval.json (with the host's CPU and load).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save

FULL = (47_952, 10_000, 512, 100)
QUICK = (2_000, 500, 64, 10)


def features(n_train: int, n_test: int, dim: int, classes: int) -> tuple[torch.Tensor, ...]:
    """Class means on a sphere plus isotropic noise: a task with kNN / linear accuracy well below 100%."""
    g = torch.Generator().manual_seed(0)
    means = torch.randn(classes, dim, generator=g)
    y = torch.randint(0, classes, (n_train + n_test,), generator=g)
    x = means[y] * (2.0 / dim**0.5) + torch.randn(n_train + n_test, dim, generator=g)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def run_case(case: str, sizes: tuple[int, int, int, int]) -> dict[str, float]:
    from dimcollapse.training.evaluation import knn_accuracies, linear_probe
    from dimcollapse.training.knn_eval import device_knn_accuracies
    from dimcollapse.training.probe_sgd import SGDProbeSettings, fit_sgd_probe, probe_topk, rows_of

    xtr, ytr, xte, yte = features(*sizes)
    c = sizes[3]
    t, cpu = time.perf_counter(), time.process_time()
    if case == "knn_old":
        acc = knn_accuracies(xtr, ytr, xte, yte, (20, 200), 0.07, c)[200][0]
    elif case in ("knn", "knn_f16"):
        storage = "float16" if case == "knn_f16" else "float32"
        acc = device_knn_accuracies(xtr, ytr, xte, yte, (20, 200), 0.07, c, storage)[200][0]
    elif case == "sgd":
        layer = fit_sgd_probe(rows_of(xtr), ytr, xtr.shape[1], c, SGDProbeSettings())
        acc = probe_topk(layer, rows_of(xte), yte)[1]
    elif case in ("lbfgs", "lbfgs32"):
        dtype = torch.float32 if case == "lbfgs32" else torch.float64
        acc = linear_probe(xtr, ytr, xte, yte, c, 100, 1e-4, dtype)[0]
    else:
        raise SystemExit(f"error: unknown case '{case}'")
    seconds, cpu_s = time.perf_counter() - t, time.process_time() - cpu
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"seconds": seconds, "cpu_seconds": cpu_s, "top1": acc, "peak_rss_gib": peak_gib}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cases", default="knn_old,knn,knn_f16,lbfgs32,sgd,lbfgs")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    sizes = QUICK if args.quick else FULL
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_case(args.one, sizes)))
        return
    out: dict[str, object] = {"sizes": dict(zip(("train", "test", "dim", "classes"), sizes, strict=True))}
    for case in args.cases.split(","):
        cmd = [sys.executable, __file__, "--one", case, "--threads", str(args.threads)]
        res = subprocess.run(
            cmd + (["--quick"] if args.quick else []), capture_output=True, text=True, check=True
        )
        out[case] = json.loads(res.stdout.strip().splitlines()[-1])
        print(case, out[case], flush=True)
    print(f"wrote {save('bench_eval', out, args.quick)}")


if __name__ == "__main__":
    main()
