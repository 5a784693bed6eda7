"""trainer.precision=auto: bf16 autocast only on hardware with native bf16."""

from __future__ import annotations

from pathlib import Path

from dimcollapse.training.precision import choose_precision, cpu_flags, has_native_bf16

AVX2_ONLY = {"fpu", "sse2", "avx", "avx2", "fma"}
SAPPHIRE_RAPIDS = AVX2_ONLY | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}


def test_cpu_choice_follows_native_bf16_flags() -> None:
    assert choose_precision("auto", "cpu", flags=AVX2_ONLY) == "32-true"
    assert choose_precision("auto", "cpu", flags=SAPPHIRE_RAPIDS) == "bf16-mixed"
    assert choose_precision("auto", "cpu", flags=AVX2_ONLY | {"avx512_bf16"}) == "bf16-mixed"
    assert choose_precision("auto", "cpu", flags=AVX2_ONLY | {"avx512f"}) == "32-true"  # no bf16 math
    assert not has_native_bf16(AVX2_ONLY | {"avx512f", "f16c"})


def test_gpu_choice_and_explicit_requests() -> None:
    assert choose_precision("auto", "gpu", cuda_bf16=True) == "bf16-mixed"
    assert choose_precision("auto", "cuda", cuda_bf16=False) == "16-mixed"
    assert choose_precision("auto", "mps", flags=SAPPHIRE_RAPIDS) == "32-true"
    assert choose_precision("bf16-mixed", "cpu", flags=AVX2_ONLY) == "bf16-mixed"  # explicit wins
    assert choose_precision("32-true", "cpu", flags=SAPPHIRE_RAPIDS) == "32-true"


def test_cpu_flags_parses_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 amx_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()
