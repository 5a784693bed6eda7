"""`make gpu-check` never breaks while no GPU is lent: its --quick mode runs here on the CPU (an on/off row
per kernel choice), and every run of its end-to-end study resolves and builds at the quick size."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
ROW_KINDS = (
    "engine step",
    "bare loop",
    "engine / bare step time",
    "input pipeline",
    "input / engine images/s",
    "monitor measurement",
    "monitor / one step",
    "monitor share at every",
    "settings",
)
# on/off rows on the CPU (torch.compile takes minutes to compile here: not in --quick)
KERNEL_CHOICES = ("channels_last", "cudnn_benchmark", "tf32")


@pytest.mark.slow
def test_quick_gpu_check_writes_every_row_finite_and_positive(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path / "gc")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads((tmp_path / "gc" / "gpu_check.json").read_text())
    md = (tmp_path / "gc" / "gpu_check.md").read_text()
    names = [r["row"] for r in data["rows"]]
    for recipe in ("cifar_r18", "imagenet_r50"):
        for kind in ROW_KINDS:
            assert sum(n.startswith(recipe) and kind in n for n in names) == 1, (recipe, kind, names)
    assert sum(n.startswith("eval") and "kNN" in n for n in names) == 1
    assert sum(n.startswith("eval") and "L-BFGS" in n for n in names) == 1
    for r in data["rows"]:
        assert math.isfinite(r["value"]) and r["value"] > 0, r
        assert r["row"] in md and r["row"] in out.stdout
    # the device is stated, and on the CPU the strided 1x1 workaround is the one in effect
    assert data["device"]["device"].startswith("cpu") and "# gpu-check on cpu" in md
    settings = [r["settings"] for r in data["rows"] if "settings" in r]
    assert len(settings) == 2 and all(s["strided_1x1_workaround"] for s in settings)
    assert all(s["channels_last"] and s["device"] == "cpu" and not s["tf32"] for s in settings)
    from dimcollapse.training.precision import cpu_flags

    choices = (*KERNEL_CHOICES, "strided_1x1_workaround") if "avx512f" in cpu_flags() else KERNEL_CHOICES
    for recipe in ("cifar_r18", "imagenet_r50"):
        for choice in choices:
            for kind in ("on", "off", "on / off step time"):
                assert sum(n.startswith(recipe) and n.endswith(f"{choice} {kind}") for n in names) == 1
        assert any(n.startswith(recipe) and "torch_compile not run" in n for n in data["notes"])
    assert any("not run: the end-to-end study" in n for n in data["notes"])


def _module(name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def test_every_run_of_the_checks_study_resolves_and_builds_at_the_quick_size(tmp_path: Path) -> None:
    """The study the check runs end to end (its named paper study, its scale-down variant, its overrides)
    plans and builds every run: a config the check's overrides break would fail here, not on the GPU."""
    import torch

    from dimcollapse.study.grid import load_study
    from dimcollapse.study.plan import resolve_configs
    from dimcollapse.study.scale import scaled_study
    from dimcollapse.training.module import SSLModule
    from dimcollapse.training.plan import plan_run

    gs = _module("gpu_check_study")
    cmd = gs.study_command("cpu", True, tmp_path / "s")  # type: ignore[attr-defined]
    assert cmd[2:4] == ["dimcollapse", "study"] and Path(cmd[4]).is_file() and "--scale" in cmd
    study = scaled_study(load_study(cmd[4]), gs.SCALE)  # type: ignore[attr-defined]
    resolved = resolve_configs(study, gs.study_overrides("cpu", True))  # type: ignore[attr-defined]
    assert len(resolved) == 4
    for _spec, cfg in resolved:
        assert cfg.optim.max_steps == gs.STEPS and cfg.trainer.devices == 1  # type: ignore[attr-defined]
        module = SSLModule.from_plan(plan_run(cfg, world_size=1))
        x = torch.randint(0, 256, (cfg.data.batch_size, 3, 16, 16), dtype=torch.uint8)
        y = torch.zeros(cfg.data.batch_size, dtype=torch.long)
        assert torch.isfinite(module.training_step((x, y), 0)["loss"])


def test_gpu_check_builds_the_recipes_through_the_run_plan() -> None:
    """The measured module is the engine's SSLModule of the recipe's plan (not a separate model)."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        gc = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gc)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    import torch

    from dimcollapse.models.resnet import Bottleneck
    from dimcollapse.training.module import SSLModule

    recipe, _ = gc.RECIPES["imagenet_r50"]
    overrides = [*gc.recipe_overrides(16, 4, 64, 16), *gc.QUICK_MODEL["imagenet_r50"], gc.QUICK_PROJECTOR]
    plan, module = gc.build(recipe, overrides, torch.device("cpu"))
    assert type(module) is SSLModule
    assert plan.config.objective.name == "simclr" and plan.config.model.backbone == "resnet50"
    blocks = [m for m in module.model.backbone.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 3 + 4 + 6 + 3
    assert plan.data.batch_size == 4 and module.input_size == 16
