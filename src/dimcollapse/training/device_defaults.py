"""Per-device kernel choices of a training run: channels_last, cuDNN autotuning, TF32, the strided 1x1 kernel.

    device = describe_device(cfg.trainer.accelerator)   # what the run will train on (this machine)
    kernels = choose_kernels(cfg.trainer, device)        # the device's defaults, each overridable
    # build_parts lays the backbone out by kernels.channels_last; KernelFlags (callbacks) sets the flags

| choice (``trainer.<key>``) | CPU | CUDA | other (mps) |
| --- | --- | --- | --- |
| ``channels_last`` (conv backbones) | on (oneDNN NHWC, ~2x) | on (cuDNN NHWC tensor-core convs) | off |
| ``cudnn_benchmark`` | off (no cuDNN) | on (fixed view shapes: autotune once per shape) | off |
| ``tf32`` (float32 matmul and conv) | off (not a CPU format) | on where compute capability >= 8.0 | off |
| ``strided_1x1_workaround`` | on (torch 2.13's oneDNN bug) | off (cuDNN's strided 1x1) | off |

``None`` in the config is the device's default; a value overrides it. ``benchmarks/gpu_check.py`` measures
each choice on and off on the recipes' step. The record (``KernelChoices.record``) goes to metrics.json.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from dimcollapse.errors import ConfigError
from dimcollapse.training.config_schema import TrainerConfig

KERNEL_KEYS = ("channels_last", "cudnn_benchmark", "tf32", "strided_1x1_workaround")
TF32_CAPABILITY = (8, 0)  # Ampere and later compute TF32 on tensor cores


@dataclass(frozen=True)
class DeviceInfo:
    """The device a run trains on: ``kind`` (cpu | cuda | mps), its name, and whether it computes TF32."""

    kind: str
    name: str = ""
    tf32_capable: bool = False


@dataclass(frozen=True)
class KernelChoices:
    """The kernel choices in effect for a run (see the module table)."""

    channels_last: bool
    cudnn_benchmark: bool
    tf32: bool
    strided_1x1_workaround: bool

    def record(self, device: DeviceInfo) -> dict[str, bool | str]:
        """metrics.json's ``kernels``: the device kind and name, and each choice as used."""
        return {"device": device.kind, "device_name": device.name, **asdict(self)}


def device_kind(accelerator: str) -> str:
    """cpu | cuda | mps for a trainer.accelerator ('auto': CUDA, else MPS, else the CPU, as Lightning)."""
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    if accelerator == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    return str(accelerator)


def describe_device(accelerator: str) -> DeviceInfo:
    """This machine's device for ``accelerator`` (a CUDA device: its name and TF32 support, device 0)."""
    kind = device_kind(accelerator)
    if kind == "cuda" and torch.cuda.is_available():
        capability = torch.cuda.get_device_capability(0)
        return DeviceInfo("cuda", torch.cuda.get_device_name(0), tuple(capability) >= TF32_CAPABILITY)
    return DeviceInfo(kind)


def default_kernels(device: DeviceInfo) -> KernelChoices:
    """The device's defaults (module table)."""
    cuda = device.kind == "cuda"
    return KernelChoices(
        channels_last=device.kind in ("cpu", "cuda"),
        cudnn_benchmark=cuda,
        tf32=cuda and device.tf32_capable,
        strided_1x1_workaround=device.kind == "cpu",
    )


def choose_kernels(trainer: TrainerConfig, device: DeviceInfo) -> KernelChoices:
    """The device's defaults with each ``trainer.<key>`` that is set; a choice the device cannot make is
    one ConfigError naming the key."""
    chosen = asdict(default_kernels(device))
    for key in KERNEL_KEYS:
        value = getattr(trainer, key, None)
        if value is not None:
            chosen[key] = bool(value)
    where = f"the run trains on {device.kind}" + (f" ({device.name})" if device.name else "")
    if device.kind != "cuda":
        for key in ("cudnn_benchmark", "tf32"):
            if chosen[key]:
                raise ConfigError(
                    f"trainer.{key}=true applies to CUDA GPUs only and {where}; remove trainer.{key}."
                )
    elif chosen["tf32"] and not device.tf32_capable:
        raise ConfigError(
            f"trainer.tf32=true needs a GPU of compute capability >= 8.0 and {where}; remove trainer.tf32."
        )
    if device.kind == "cpu" and not chosen["strided_1x1_workaround"]:
        raise ConfigError(
            "trainer.strided_1x1_workaround=false on the CPU runs torch 2.13's oneDNN strided 1x1 backward, "
            "which corrupts the heap on AVX2 CPUs (docs/known_bugs.md); remove the key."
        )
    return KernelChoices(**chosen)


def apply_kernel_flags(kernels: KernelChoices, device: DeviceInfo) -> dict[str, object] | None:
    """Set cudnn.benchmark and TF32 (matmul precision 'high' / 'highest', cudnn.allow_tf32) on a CUDA run;
    return the previous flags for ``restore_kernel_flags`` (None: nothing set, other devices)."""
    if device.kind != "cuda":
        return None
    previous: dict[str, object] = {
        "benchmark": torch.backends.cudnn.benchmark,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "matmul": torch.get_float32_matmul_precision(),
    }
    torch.backends.cudnn.benchmark = kernels.cudnn_benchmark
    torch.backends.cudnn.allow_tf32 = kernels.tf32
    torch.set_float32_matmul_precision("high" if kernels.tf32 else "highest")
    return previous


def restore_kernel_flags(previous: dict[str, object] | None) -> None:
    """Put back the flags ``apply_kernel_flags`` replaced."""
    if previous is None:
        return
    torch.backends.cudnn.benchmark = bool(previous["benchmark"])
    torch.backends.cudnn.allow_tf32 = bool(previous["cudnn_tf32"])
    torch.set_float32_matmul_precision(str(previous["matmul"]))
