"""The benchmark scripts run: quick mode of the diagnostics comparison, and the README table writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_diagnostics_benchmark_quick_mode_runs_and_tables_render(tmp_path: Path) -> None:
    env = {**os.environ, "DIMCOLLAPSE_BENCH_RESULTS": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_diagnostics.py"), "--quick"]
    out = subprocess.run([*cmd, "--only", "spectrum_512", "lid"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads((tmp_path / "quick" / "diagnostics.json").read_text())
    spec = data["cases"]["spectrum_512"]
    # ours, np.cov + eigvalsh and the float64 floor agree to float64 precision; the float32 SVD does not
    assert spec["max_rel_error"]["ours"] < 1e-9 and spec["max_rel_error"]["np_cov_eigvalsh"] < 1e-9
    assert spec["max_rel_error"]["numpy_svd_f32"] > spec["max_rel_error"]["ours"]
    assert {"min", "median", "max"} <= set(spec["ours_over_floor"])
    lid = data["cases"]["lid"]
    assert lid["median_rel_diff_vs_ours"]["sklearn_nn"] < 1e-4
    assert isinstance(data["host"]["flags"], list) and data["host"]["load_avg_1_5_15"]
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- tables:begin -->\nold\n<!-- tables:end -->\ntail\n")
    tables = [sys.executable, str(ROOT / "benchmarks" / "tables.py"), "--results", str(tmp_path / "quick")]
    subprocess.run([*tables, "--readme", str(readme)], env=env, check=True, capture_output=True)
    text = readme.read_text()
    assert "old" not in text and "np_cov_eigvalsh" in text and "sklearn_nn" in text
    assert text.endswith("tail\n")


@pytest.mark.slow
def test_family_step_benchmark_quick_mode_runs_and_tables_render(tmp_path: Path) -> None:
    from dimcollapse.data import fashion_mnist as fm

    roots = [os.environ.get("DIMCOLLAPSE_DATA", ""), *map(str, fm.DEFAULT_ROOTS)]
    names = ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte")
    if not any(r and Path(r, n).exists() for r in roots for n in names):
        pytest.skip("the family recipes train on Fashion-MNIST, not installed here (make setup installs it)")
    env = {**os.environ, "DIMCOLLAPSE_BENCH_RESULTS": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_family_step.py"), "--quick"]
    out = subprocess.run([*cmd, "--methods", "mocov2plus", "dino"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads((tmp_path / "quick" / "family_step.json").read_text())
    assert set(data["cases"]) == {"mocov2plus", "dino"} and data["load_avg_at_start"]
    moco, dino = data["cases"]["mocov2plus"], data["cases"]["dino"]
    assert moco["momentum_encoder"] and moco["queue_rows"] == 2 * 4096 and moco["batch"] == 128
    assert "local" in dino["views"] and "local" not in moco["views"]
    for case in (moco, dino):  # a whole step costs more than the bare forward + backward it contains
        assert case["seconds_median"]["engine"] > 0 and case["engine_over_bare"]["median"] > 1
    assert "| mocov2plus | mocov2plus |" in out.stdout
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- tables:begin -->\nold\n<!-- tables:end -->\n")
    tables = [sys.executable, str(ROOT / "benchmarks" / "tables.py"), "--results", str(tmp_path / "quick")]
    subprocess.run([*tables, "--readme", str(readme)], env=env, check=True, capture_output=True)
    assert "Method family: step cost" in readme.read_text() and "| dino | dino |" in readme.read_text()


@pytest.mark.slow
def test_spectrum_host_benchmark_quick_mode_times_both_kernels() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_spectrum_host.py"), "--quick", "--rounds", "1"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "OpenBLAS core(s)" in text and text.count("this host's kernel:") == 2
    assert "np.cov / ours " in text and "np.cov / ours_blocks" in text
    errors = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if "lambda_max" in line]
    assert errors and max(errors) < 1e-12  # every kernel agrees with the float64 reference
    assert "extra peak memory" in text and "np.cov +" in text


@pytest.mark.slow
def test_input_benchmark_quick_mode_measures_every_case(tmp_path: Path) -> None:
    env = {**os.environ, "DIMCOLLAPSE_BENCH_RESULTS": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_input.py"), "--quick"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    cases = json.loads((tmp_path / "quick" / "input.json").read_text())["cases"]
    assert set(cases) == {
        "old_fit_224",
        "new_rrc_2views",
        "new_rrc_1view",
        "new_eval_256_224",
        "gpu_path_worker",
    }
    assert all(0 < c["min"] <= c["median"] <= c["max"] for c in cases.values())
