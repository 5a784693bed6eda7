"""Training precision from the hardware: bf16 autocast only where the CPU/GPU computes bf16 natively.

On a CPU without bf16 instructions (AVX2-only hosts) bf16 autocast is emulated and measured 11x slower
than float32 (issue 15), so ``trainer.precision=auto`` picks ``32-true`` there, ``bf16-mixed`` on CPUs
with AVX512-BF16 or AMX-BF16, and ``bf16-mixed`` / ``16-mixed`` on CUDA GPUs with / without bf16.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo flags of native bf16 math


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags listed in ``cpuinfo`` (empty where the file is unavailable, e.g. macOS)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def has_native_bf16(flags: Iterable[str]) -> bool:
    """True if the flags include a bf16 arithmetic extension (AVX512-BF16 or AMX-BF16)."""
    return not NATIVE_BF16_FLAGS.isdisjoint(flags)


def choose_precision(
    requested: str,
    accelerator: str = "cpu",
    flags: Iterable[str] | None = None,
    cuda_bf16: bool | None = None,
) -> str:
    """``requested`` unless it is "auto": then 32-true / bf16-mixed on CPU by native bf16, and on CUDA
    bf16-mixed where supported, else 16-mixed. ``flags`` and ``cuda_bf16`` default to this machine's."""
    if requested != "auto":
        return requested
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        if cuda_bf16 is None:
            cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return "bf16-mixed" if cuda_bf16 else "16-mixed"
    if accelerator not in ("cpu", "auto"):
        return "32-true"  # e.g. mps: no measured benefit
    return "bf16-mixed" if has_native_bf16(cpu_flags() if flags is None else flags) else "32-true"
