"""One call on a GPU machine that answers "are the recipes GPU-bound?" (`make gpu-check`).

On the best device here (cuda if available, else cpu; stated in the output) and in interleaved rounds
(medians over rounds, ratios from one round each), for the CIFAR recipe (ResNet-18, cifar stem, 32 px) and
the ImageNet recipe (ResNet-50, 224 px), each built the way `dimcollapse train` builds it
(``plan_run`` -> ``SSLModule.from_plan``) on generated in-memory data of the recipe's image size:
  1. the engine's training step (``SSLModule.training_step`` + backward + the optimizer's step) against a
     bare loop (the same backbone, projector, objective and optimizer: views -> forward -> loss ->
     backward -> step), images/s and engine / bare;
  2. the input pipeline (the datamodule's train loader -> device -> the recipe's views) against the step;
  3. the collapse monitor's measurement (``CollapseMonitor.measure`` as the run builds it: weight spectra +
     probe embeddings) as a multiple of one step, and its share at the recipe's every_n_steps;
  4. the evaluation (the run's kNN and L-BFGS linear probe) on synthetic features of a stated size;
  5. the kernel choices in effect (training/device_defaults.py: the device's defaults, applied as a run
     applies them) and an on/off row for each (strided 1x1 rewrite, channels_last, cudnn.benchmark, TF32,
     torch.compile of the backbone) on the engine step (gpu_check_kernels.py);
  6. one named paper study end to end through `dimcollapse study` (gpu_check_study.py), timed.

python benchmarks/gpu_check.py [--quick] [--rounds 5] [--compile auto|on|off] [--no-study] [--out DIR]
Writes <out>/gpu_check.json and <out>/gpu_check.md atomically. --quick: tiny sizes (batch 8, 16 px, 2
rounds, tiny feature sets) so that it runs on a CPU in seconds (tests/test_gpu_check.py); the study's four
train processes only with --study (the test runs its quick size on its own).
Not measured here: the image-folder (JPEG decoding) input of the ImageNet recipe: the input rows read
generated in-memory images.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import host, interleaved
from gpu_check_kernels import kernel_rows
from gpu_check_study import study_rows

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {
    "cifar_r18": ("configs/cifar10/simclr_mlp.yaml", 32),
    "imagenet_r50": ("configs/papers/recipes/ldreg_simclr_imagenet1k.yaml", 224),
}
# --quick: the same architectures (blocks, stems, projector depth) at 1/8 width and a 64-wide projector
QUICK_MODEL = {
    "cifar_r18": ["model.backbone_kwargs={stem: cifar, width: 0.125}"],
    "imagenet_r50": ["model.backbone_kwargs={stem: imagenet, zero_init_residual: true, width: 0.125}"],
}
QUICK_PROJECTOR = "model.projector_kwargs={hidden_dim: 64, out_dim: 32, depth: 2, last_bn: true}"
NOTES = [
    "medians over interleaved rounds; each ratio is the median of per-round ratios",
    "data: generated in-memory uint8 images (dataset 'synthetic') at the recipe's size; the ImageNet "
    "recipe's image-folder JPEG decoding is not measured here",
    "the recipe rows run with the device's kernel choices applied as a run applies them (settings row)",
]


def device() -> torch.device:
    """cuda when available, else cpu."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(dev: torch.device) -> None:
    """Wait for the device's queued work (so that a wall clock times it)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn: Callable[[], Any], dev: torch.device) -> Callable[[], Any]:
    """``fn`` followed by a device sync."""

    def run() -> Any:
        out = fn()
        sync(dev)
        return out

    return run


def autocast(dev: torch.device, precision: str) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """The recipe's mixed precision on cuda (no GradScaler: throughput only); plain float32 on cpu."""
    if dev.type == "cuda" and precision in ("16-mixed", "bf16-mixed"):
        dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
        return lambda: torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext


def recipe_overrides(
    size: int, batch: int | None, pool: int, probe: int, dev: torch.device | None = None
) -> list[str]:
    """Generated in-memory data of the recipe's image size, one process, a small probe and eval set, the
    accelerator of ``dev`` (default: this machine's)."""
    kw = f"{{n: {pool}, num_classes: 10, channels: 3, image_size: {size}}}"
    on_gpu = (dev or device()).type == "cuda"
    out = [
        f"trainer.accelerator={'gpu' if on_gpu else 'cpu'}",
        "data.name=synthetic",
        "data.root=null",
        f"data.kwargs={kw}",
        "data.num_workers=0",
        "data.persistent_workers=false",
        "data.prefetch_factor=null",
        "trainer.devices=1",
        "trainer.num_nodes=1",
        "trainer.strategy=auto",
        "trainer.sync_batchnorm=false",
        f"monitor.probe_size={probe}",
        "eval.max_train=32",
        "eval.max_test=32",
    ]
    return out + ([f"data.batch_size={batch}"] if batch else [])


def build(recipe: str, overrides: list[str], dev: torch.device) -> tuple[Any, Any]:
    """(plan, module on ``dev``) as `dimcollapse train` builds them: plan_run -> SSLModule.from_plan."""
    from dimcollapse.training.config import load_config
    from dimcollapse.training.module import SSLModule
    from dimcollapse.training.plan import plan_run

    plan = plan_run(load_config(ROOT / recipe, overrides), world_size=1)
    module = SSLModule.from_plan(plan).to(dev)
    module.train()
    return plan, module


def step_jobs(plan: Any, module: Any, dev: torch.device) -> tuple[dict[str, Callable[[], Any]], int]:
    """{"engine": the module's step, "bare": the plain loop}, and the batch size."""
    from dimcollapse.training.optim import build_optimizer

    model, dm = module.model, plan.datamodule
    opt = build_optimizer(model.online_modules(), plan.parts.settings.optim)
    b = plan.data.batch_size
    x, y = dm.pool_images[:b].to(dev), dm.pool_labels[:b].to(dev)
    cast = autocast(dev, str(plan.config.trainer.precision))

    def engine() -> None:
        opt.zero_grad(set_to_none=True)
        with cast():
            loss = module.training_step((x, y), 0)["loss"]
        loss.backward()
        opt.step()

    def bare() -> None:
        opt.zero_grad(set_to_none=True)
        with cast():
            v1, v2 = module.views(x)[:2]
            z1, z2 = model.projector(model.backbone(torch.cat([v1, v2]))).chunk(2)
            loss = model.objective(z1, z2)
        loss.backward()
        opt.step()

    return {"engine": timed(engine, dev), "bare": timed(bare, dev)}, b


def input_job(plan: Any, module: Any, dev: torch.device, batches: int) -> Callable[[], Any]:
    """``batches`` batches of the datamodule's train loader moved to ``dev`` and turned into views."""
    dm = plan.datamodule
    loader = dm.train_dataloader()

    def batches_iter() -> Iterator[Any]:
        while True:
            yield from loader

    it = batches_iter()

    def run() -> None:
        with torch.no_grad():
            for _ in range(batches):
                x, _y = next(it)
                module.views(x.to(dev, non_blocking=True))

    return timed(run, dev)


def monitor_job(plan: Any, module: Any, dev: torch.device) -> tuple[Callable[[], Any], int]:
    """One measurement of the collapse monitor built as the run builds it, and its every_n_steps."""
    from dimcollapse.training.callbacks.collapse_monitor import CollapseMonitor

    mon = plan.monitor
    monitor = CollapseMonitor(
        plan.datamodule.probe_batch()[0],
        every_n_steps=mon.every_n_steps,
        warn_fraction=mon.warn_fraction,
        lid_k=mon.lid_k,
        weight_spectra=mon.weight_spectra,
    )
    return timed(lambda: monitor.measure(module, 0), dev), int(mon.every_n_steps)


def median(xs: list[float]) -> float:
    """The median."""
    return float(statistics.median(xs))


def ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of num[i] / den[i]."""
    return median([a / b for a, b in zip(num, den, strict=True)])


def fitting_rows(name: str, a: argparse.Namespace, dev: torch.device, notes: list[str]) -> list[dict]:
    """``recipe_rows`` at the recipe's batch, halved after each CUDA out-of-memory (said in ``notes``)."""
    recipe, size = RECIPES[name]
    batch = 8 if a.quick else a.batch
    while True:
        try:
            return recipe_rows(name, recipe, size, batch, a, dev, notes)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            from dimcollapse.training.config import load_config

            tried = batch or int(load_config(ROOT / recipe).data.batch_size)
            if tried <= 8:
                raise
            batch = tried // 2
            notes.append(f"{name}: out of memory at batch {tried} per device; measured at {batch}")


def recipe_rows(
    name: str,
    recipe: str,
    size: int,
    batch: int | None,
    a: argparse.Namespace,
    dev: torch.device,
    notes: list[str],
) -> list[dict]:
    """Rows 1-3 and the kernel settings and on/off rows (5) of one recipe at ``batch`` per device (None:
    the recipe's), under the device's kernel flags as a run sets them."""
    from dimcollapse.training.device_defaults import apply_kernel_flags, restore_kernel_flags

    pool, probe = (64, 16) if a.quick else (max(4 * (batch or 512), 1024), 512)
    overrides = recipe_overrides(16 if a.quick else size, batch, pool, probe, dev)
    overrides += [*QUICK_MODEL[name], QUICK_PROJECTOR] if a.quick else []
    plan, module = build(recipe, overrides, dev)
    previous = apply_kernel_flags(plan.trainer.kernels, plan.trainer.device)
    try:
        rows = _measured_rows(name, plan, module, a, dev)
        first = name == a.recipes.split(",")[0]  # auto: the first recipe only (compiling takes minutes)
        compile_on = a.compile == "on" or (a.compile == "auto" and dev.type == "cuda" and first)
        engine = lambda m: step_jobs(plan, m, dev)[0]["engine"]  # noqa: E731
        tag = rows[0]["row"].split(":")[0]
        more, said = kernel_rows(tag, plan, module, dev, engine, a.rounds, compile_on)
    finally:
        restore_kernel_flags(previous)
    notes += said
    return rows + more


def _measured_rows(name: str, plan: Any, module: Any, a: argparse.Namespace, dev: torch.device) -> list[dict]:
    """Rows 1-3 and the settings row of one built recipe."""
    steps, b = step_jobs(plan, module, dev)
    n_in = 2
    monitor, every = monitor_job(plan, module, dev)
    jobs = {**steps, "input": input_job(plan, module, dev, n_in), "monitor": monitor}
    t = interleaved(jobs, a.rounds)
    eng, bare = b / median(t["engine"]), b / median(t["bare"])
    inp = n_in * b / median(t["input"])
    mon_steps = ratio(t["monitor"], t["engine"])
    backbone = module.model.backbone
    px = int(module.input_size)
    tag = f"{name} (batch {b}, {px} px)"
    return [
        {"row": f"{tag}: engine step", "value": eng, "unit": "images/s"},
        {"row": f"{tag}: bare loop", "value": bare, "unit": "images/s"},
        {"row": f"{tag}: engine / bare step time", "value": ratio(t["engine"], t["bare"]), "unit": "x"},
        {"row": f"{tag}: input pipeline", "value": inp, "unit": "images/s"},
        {"row": f"{tag}: input / engine images/s", "value": inp / eng, "unit": "x (>1: input keeps up)"},
        {"row": f"{tag}: monitor measurement", "value": median(t["monitor"]), "unit": "s"},
        {"row": f"{tag}: monitor / one step", "value": mon_steps, "unit": "steps"},
        {"row": f"{tag}: monitor share at every {every}", "value": mon_steps / every, "unit": "of steps"},
        {
            "row": f"{tag}: settings",
            "value": 1.0,
            "unit": "flag",
            "settings": {
                **plan.trainer.kernels.record(plan.trainer.device),
                "channels_last": bool(getattr(backbone, "channels_last", False)),  # the layout built
                "precision": str(plan.config.trainer.precision) if dev.type == "cuda" else "32 (cpu)",
            },
        },
    ]


def eval_rows(a: argparse.Namespace, dev: torch.device) -> list[dict]:
    """Row 4: the run's kNN (k = 20, 200) and L-BFGS linear probe (float32, eval.probe_dtype's default)
    on synthetic features."""
    from dimcollapse.training.evaluation import linear_probe
    from dimcollapse.training.knn_eval import device_knn_accuracies

    n, m, d, c = (64, 32, 16, 4) if a.quick else (a.eval_train, a.eval_test, a.eval_dim, a.eval_classes)
    epochs = 5 if a.quick else 100
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(c, d, generator=g) * 2
    ytr, yte = torch.randint(0, c, (n,), generator=g), torch.randint(0, c, (m,), generator=g)
    xtr = (centers[ytr] + torch.randn(n, d, generator=g)).to(dev)
    xte = (centers[yte] + torch.randn(m, d, generator=g)).to(dev)
    ytr, yte = ytr.to(dev), yte.to(dev)
    ks = (min(20, n), min(200, n))
    jobs = {
        "knn": timed(lambda: device_knn_accuracies(xtr, ytr, xte, yte, ks, 0.07, c), dev),
        "linear": timed(lambda: linear_probe(xtr, ytr, xte, yte, c, epochs, 1e-4, torch.float32), dev),
    }
    t = interleaved(jobs, max(1, a.rounds // 2))
    tag = f"eval ({n} x {d} train, {m} test, {c} classes)"
    return [
        {"row": f"{tag}: kNN k={ks}", "value": median(t["knn"]), "unit": "s"},
        {"row": f"{tag}: L-BFGS probe {epochs} it float32", "value": median(t["linear"]), "unit": "s"},
    ]


def device_settings(dev: torch.device) -> dict[str, Any]:
    """What is in effect globally: cudnn.benchmark, TF32 for matmul and cuDNN, float32 matmul precision."""
    return {
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        "torch": torch.__version__,
        "cudnn.benchmark": bool(torch.backends.cudnn.benchmark),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "threads": torch.get_num_threads(),
    }


def markdown(payload: dict[str, Any]) -> str:
    """The table as markdown, with the device, the settings and the notes."""
    lines = [f"# gpu-check on {payload['device']['device']}", ""]
    lines += [f"- {k}: {v}" for k, v in payload["device"].items()] + [""]
    lines += ["| row | value | unit |", "|---|---|---|"]
    for r in payload["rows"]:
        extra = f" {r['settings']}" if "settings" in r else ""
        lines.append(f"| {r['row']} | {r['value']:.4g} | {r['unit']}{extra} |")
    lines += ["", *[f"- note: {n}" for n in payload["notes"]], ""]
    return "\n".join(lines)


def check(rows: list[dict]) -> None:
    """Every figure finite and > 0 (an internal error otherwise: the measurement is broken)."""
    bad = [r["row"] for r in rows if not (math.isfinite(r["value"]) and r["value"] > 0)]
    if bad:
        raise RuntimeError(f"internal error: non-finite or non-positive figures: {bad}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure, print the table, write <out>/gpu_check.{json,md}; returns the payload."""
    from dimcollapse.utils.atomic import atomic_write_json, atomic_write_text, ensure_writable_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a CPU check that the script runs")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=None, help="per-device batch (default: the recipe's)")
    ap.add_argument("--out", default="runs/gpu-check")
    ap.add_argument("--recipes", default=",".join(RECIPES), help=f"comma list of {sorted(RECIPES)}")
    ap.add_argument("--eval-train", type=int, default=50_000)
    ap.add_argument("--eval-test", type=int, default=10_000)
    ap.add_argument("--eval-dim", type=int, default=512)
    ap.add_argument("--eval-classes", type=int, default=100)
    ap.add_argument(
        "--compile", choices=("auto", "on", "off"), default="auto", help="torch.compile rows (auto: cuda)"
    )
    ap.add_argument("--no-study", action="store_true", help="skip the end-to-end run of a named paper study")
    ap.add_argument("--study", action="store_true", help="with --quick: run the study too (4 processes)")
    a = ap.parse_args(argv)
    names = [n for n in a.recipes.split(",") if n]
    unknown = [n for n in names if n not in RECIPES]
    if unknown or a.rounds < 1:
        print(
            f"error: unknown recipe {unknown} or --rounds < 1; choose from {sorted(RECIPES)}", file=sys.stderr
        )
        raise SystemExit(2)
    if a.quick:
        a.rounds = 2
    out = ensure_writable_dir(a.out)
    warnings.filterwarnings("ignore", message=".*self.log.*")  # training_step outside a Trainer
    dev = device()
    t0 = time.perf_counter()
    rows: list[dict] = []
    notes = list(NOTES)
    seconds: dict[str, float] = {}
    for name in names:
        t1 = time.perf_counter()
        rows += fitting_rows(name, a, dev, notes)
        seconds[name] = time.perf_counter() - t1
    t1 = time.perf_counter()
    rows += eval_rows(a, dev)
    seconds["eval"] = time.perf_counter() - t1
    if a.no_study or (a.quick and not a.study):
        notes.append("not run: the end-to-end study (--no-study, or --quick without --study)")
    else:
        t1 = time.perf_counter()
        more, said = study_rows(dev.type, a.quick, out)
        rows, notes = rows + more, notes + said
        seconds["study"] = time.perf_counter() - t1
    check(rows)
    payload = {
        "benchmark": "gpu_check",
        "quick": a.quick,
        "rounds": a.rounds,
        "device": device_settings(dev),
        "recipes": {n: RECIPES[n][0] for n in names},
        "rows": rows,
        "notes": [*notes, "cpu run: figures are not a GPU's" if dev.type == "cpu" else "cuda run"],
        "host": host(),
        "section_seconds": seconds,
        "seconds": time.perf_counter() - t0,
    }
    md = markdown(payload)
    atomic_write_json(out / "gpu_check.json", payload)
    atomic_write_text(out / "gpu_check.md", md)
    print(md)
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'} ({payload['seconds']:.1f} s)")
    return payload


if __name__ == "__main__":
    main()
