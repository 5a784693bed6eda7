"""Per-device kernel choices (training/device_defaults.py): the defaults of each device kind (CUDA ones from a
device description, not this machine), the trainer.* overrides and the choices a device cannot make
(one line, exit 2, nothing written), the backbone's layout and strided 1x1 form they give, the CUDA flags
set and restored, and the choices recorded in metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dimcollapse.cli.main import run
from dimcollapse.errors import ConfigError
from dimcollapse.models.pointwise import StridedPointwiseConv2d, set_workaround
from dimcollapse.training.config import load_config
from dimcollapse.training.device_defaults import (
    DeviceInfo,
    KernelChoices,
    apply_kernel_flags,
    choose_kernels,
    default_kernels,
    restore_kernel_flags,
)
from dimcollapse.training.plan import plan_run
from dimcollapse.training.run import train
from robust_helpers import TINY, TINY_YAML

A100 = DeviceInfo("cuda", "NVIDIA A100-SXM4-80GB", tf32_capable=True)
V100 = DeviceInfo("cuda", "Tesla V100-SXM2-32GB", tf32_capable=False)


def _trainer(*overrides: str):  # type: ignore[no-untyped-def]
    return load_config(None, [*TINY, "trainer.accelerator=gpu", *overrides]).trainer


def test_the_defaults_of_each_device_kind() -> None:
    # (channels_last, cudnn_benchmark, tf32, strided_1x1_workaround)
    assert default_kernels(DeviceInfo("cpu")) == KernelChoices(True, False, False, True)
    assert default_kernels(A100) == KernelChoices(True, True, True, False)
    assert default_kernels(V100) == KernelChoices(True, True, False, False)  # no TF32 before Ampere
    assert default_kernels(DeviceInfo("mps")) == KernelChoices(False, False, False, False)


def test_each_choice_is_overridden_by_its_trainer_key() -> None:
    got = choose_kernels(_trainer("trainer.tf32=false", "trainer.cudnn_benchmark=false"), A100)
    assert got == KernelChoices(True, False, False, False)
    got = choose_kernels(_trainer("trainer.channels_last=false", "trainer.strided_1x1_workaround=true"), A100)
    assert got == KernelChoices(False, True, True, True)
    assert choose_kernels(_trainer(), A100) == default_kernels(A100)  # unset keys: the device's defaults
    assert choose_kernels(_trainer(), A100).record(A100)["device_name"] == A100.name


@pytest.mark.parametrize(
    ("overrides", "device", "says"),
    [
        (["trainer.tf32=true"], V100, "trainer.tf32=true needs a GPU of compute capability >= 8.0"),
        (["trainer.cudnn_benchmark=true"], DeviceInfo("mps"), "applies to CUDA GPUs only"),
    ],
)
def test_a_choice_the_device_cannot_make_is_refused(
    overrides: list[str], device: DeviceInfo, says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        choose_kernels(_trainer(*overrides), device)


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("trainer.tf32=true", "error: trainer.tf32=true applies to CUDA GPUs only and the run trains on cpu"),
        ("trainer.cudnn_benchmark=true", "error: trainer.cudnn_benchmark=true applies to CUDA GPUs only"),
        ("trainer.strided_1x1_workaround=false", "error: trainer.strided_1x1_workaround=false on the CPU"),
        ("trainer.channels_last=maybe", "error: "),
    ],
)
def test_bad_kernel_keys_on_the_cpu_are_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, says: str
) -> None:
    out = tmp_path / "out"
    (tmp_path / "c.yaml").write_text(TINY_YAML)
    assert run(["train", str(tmp_path / "c.yaml"), override, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(says), err
    assert not out.exists()


def test_the_layout_follows_the_device_default_or_the_key() -> None:
    default = plan_run(load_config(None, TINY)).parts.backbone
    assert default.channels_last and default.layer2[0].conv1.weight.is_contiguous(
        memory_format=torch.channels_last
    )
    plain = plan_run(load_config(None, [*TINY, "trainer.channels_last=false"])).parts.backbone
    assert not plain.channels_last and plain.layer2[0].conv1.weight.is_contiguous()
    assert not plain.layer2[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ConfigError, match=r"contradicts model\.backbone_kwargs\.channels_last=false"):
        plan_run(
            load_config(
                None, [*TINY, "trainer.channels_last=true", "model.backbone_kwargs.channels_last=false"]
            )
        )


def test_channels_last_on_a_backbone_without_a_layout_is_refused() -> None:
    vit = ["model.backbone=vit_tiny", "model.backbone_kwargs={patch_size: 4, depth: 1}"]
    with pytest.raises(ConfigError, match=r"trainer\.channels_last applies to conv backbones"):
        plan_run(load_config(None, [*TINY, *vit, "trainer.channels_last=false"]))
    assert plan_run(load_config(None, [*TINY, *vit])).parts.backbone is not None  # unset: nothing to choose


def _takes_the_rewrite(conv: StridedPointwiseConv2d) -> bool:
    """True when the forward pass subsampled its input (a slice in the graph), not the strided kernel."""
    x = torch.randn(2, conv.in_channels, 6, 6, requires_grad=True)
    node, seen = conv(x).grad_fn, []
    while node is not None:
        seen.append(type(node).__name__)
        node = next(
            (f for f, _ in node.next_functions if f is not None and "Accumulate" not in type(f).__name__),
            None,
        )
    return any("Slice" in name for name in seen)


def test_the_strided_1x1_form_is_by_device_unless_forced() -> None:
    conv = StridedPointwiseConv2d(3, 4, stride=2)
    assert _takes_the_rewrite(conv)  # the CPU's default
    holder = torch.nn.Sequential(conv, StridedPointwiseConv2d(4, 4, stride=2))
    assert set_workaround(holder, False) == 2 and not _takes_the_rewrite(conv)  # contiguous input: no bug
    set_workaround(holder, None)
    assert _takes_the_rewrite(conv)
    cfg = load_config(None, [*TINY, "model.backbone=resnet18", "model.backbone_kwargs={width: 0.125}",
                             "trainer.strided_1x1_workaround=true"])  # fmt: skip
    convs = [m for m in plan_run(cfg).parts.backbone.modules() if isinstance(m, StridedPointwiseConv2d)]
    assert convs and all(c.workaround is True for c in convs)


def test_cuda_flags_are_set_for_a_cuda_run_and_restored() -> None:
    before = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    assert apply_kernel_flags(default_kernels(DeviceInfo("cpu")), DeviceInfo("cpu")) is None  # CPU: untouched
    previous = apply_kernel_flags(default_kernels(A100), A100)
    try:
        assert torch.backends.cudnn.benchmark and torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "high" and torch.backends.cuda.matmul.allow_tf32
    finally:
        restore_kernel_flags(previous)
    after = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    assert after == before
    previous = apply_kernel_flags(choose_kernels(_trainer("trainer.tf32=false"), A100), A100)
    try:
        assert not torch.backends.cudnn.allow_tf32 and torch.get_float32_matmul_precision() == "highest"
    finally:
        restore_kernel_flags(previous)


def test_the_run_record_names_the_choices_as_used(tmp_path: Path) -> None:
    cfg = load_config(
        None, [*TINY, "optim.max_steps=2", "monitor.enabled=false", "trainer.channels_last=false"]
    )
    train(cfg, tmp_path)
    kernels = json.loads((tmp_path / "metrics.json").read_text())["kernels"]
    assert kernels == {
        "device": "cpu",
        "device_name": "",
        "channels_last": False,
        "cudnn_benchmark": False,
        "tf32": False,
        "strided_1x1_workaround": True,
    }
