"""The on/off rows of `make gpu-check`: each kernel choice of training/device_defaults.py, and torch.compile,
measured on a recipe's engine step (interleaved rounds, medians; the on/off ratio from one round each).

Choices: the strided 1x1 form (the CPU rewrite vs the plain strided kernel), channels_last (the backbone's
layout), cudnn.benchmark, TF32 (float32 matmul precision 'high' + cudnn.allow_tf32), torch.compile of the
backbone. Each contender sets its state before its step and puts it back after, so one module serves
every contender of a flag; the layout and compile contenders train copies of the module.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from _common import interleaved

CHOICES = ("strided_1x1_workaround", "channels_last", "cudnn_benchmark", "tf32", "torch_compile")


@contextlib.contextmanager
def global_flags(benchmark: bool | None = None, tf32: bool | None = None) -> Iterator[None]:
    """cudnn.benchmark and TF32 set for the block (None: unchanged), then restored."""
    saved = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    try:
        if benchmark is not None:
            torch.backends.cudnn.benchmark = benchmark
        if tf32 is not None:
            torch.backends.cudnn.allow_tf32 = tf32
            torch.set_float32_matmul_precision("high" if tf32 else "highest")
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
        torch.set_float32_matmul_precision(saved[2])


def _within(
    job: Callable[[], Any], make: Callable[[], contextlib.AbstractContextManager[Any]]
) -> Callable[[], Any]:
    def run() -> Any:
        with make():
            return job()

    return run


def _workaround(module: Any, on: bool) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    from dimcollapse.models.pointwise import set_workaround

    @contextlib.contextmanager
    def state() -> Iterator[None]:
        set_workaround(module.model.backbone, on)
        try:
            yield
        finally:
            set_workaround(module.model.backbone, None)

    return state


def contiguous_copy(module: Any) -> Any:
    """A copy of ``module`` whose backbone runs in contiguous (NCHW) layout."""
    other = copy.deepcopy(module)
    backbone = other.model.backbone
    backbone.to(memory_format=torch.contiguous_format)
    backbone.channels_last = False
    return other


def plain_1x1_is_safe(dev: torch.device) -> bool:
    """The plain strided 1x1 kernel may run here: off the CPU, or on a CPU with AVX-512 (the oneDNN bug of
    docs/known_bugs.md corrupts the heap on AVX2-only CPUs)."""
    from dimcollapse.training.precision import cpu_flags

    return dev.type != "cpu" or "avx512f" in cpu_flags()


def contenders(
    plan: Any, module: Any, dev: torch.device, engine: Callable[[Any], Callable[[], Any]], compile_on: bool
) -> tuple[dict[str, Callable[[], Any]], dict[str, str], dict[str, float]]:
    """({"<choice>:on" / ":off": step job}, {choice: why not measured}, {"torch_compile": first-call s})."""
    jobs: dict[str, Callable[[], Any]] = {}
    skipped: dict[str, str] = {}
    extra: dict[str, float] = {}
    step = engine(module)
    if plain_1x1_is_safe(dev):
        jobs["strided_1x1_workaround:on"] = _within(step, _workaround(module, True))
        jobs["strided_1x1_workaround:off"] = _within(step, _workaround(module, False))
    else:
        skipped["strided_1x1_workaround"] = "not run on an AVX2-only CPU: the plain kernel corrupts the heap"
    if getattr(module.model.backbone, "channels_last", None) is None:
        skipped["channels_last"] = "the backbone has no memory layout to choose"
    else:
        flat = engine(contiguous_copy(module)) if module.model.backbone.channels_last else step
        layout = step if module.model.backbone.channels_last else engine(_channels_last_copy(module))
        jobs["channels_last:on"], jobs["channels_last:off"] = layout, flat
    for key, flag in (("cudnn_benchmark", "benchmark"), ("tf32", "tf32")):
        jobs[f"{key}:on"] = _within(step, lambda flag=flag: global_flags(**{flag: True}))
        jobs[f"{key}:off"] = _within(step, lambda flag=flag: global_flags(**{flag: False}))
    if compile_on:
        try:
            compiled = copy.deepcopy(module)
            compiled.model.backbone.compile()
            job = engine(compiled)
            t0 = time.perf_counter()
            job()  # compiles forward and backward
            extra["torch_compile"] = time.perf_counter() - t0
            jobs["torch_compile:on"], jobs["torch_compile:off"] = job, step
        except Exception as e:  # a backend that does not compile here: say so in the table
            skipped["torch_compile"] = f"torch.compile failed here: {type(e).__name__}: {str(e)[:120]}"
    else:
        skipped["torch_compile"] = "not run (--compile on runs it; auto: the first recipe on cuda only)"
    return jobs, skipped, extra


def _channels_last_copy(module: Any) -> Any:
    other = copy.deepcopy(module)
    other.model.backbone.to(memory_format=torch.channels_last)
    other.model.backbone.channels_last = True
    return other


def kernel_rows(
    tag: str,
    plan: Any,
    module: Any,
    dev: torch.device,
    engine: Callable[[Any], Callable[[], Any]],
    rounds: int,
    compile_on: bool,
) -> tuple[list[dict], list[str]]:
    """Rows (images/s on and off, on/off step time) per choice, and notes of the choices not measured."""
    b = int(plan.data.batch_size)
    default = plan.trainer.kernels.record(plan.trainer.device)
    jobs, skipped, extra = contenders(plan, module, dev, engine, compile_on)
    t = interleaved(jobs, rounds)
    rows: list[dict] = []
    for choice in CHOICES:
        if f"{choice}:on" not in t:
            continue
        on, off = t[f"{choice}:on"], t[f"{choice}:off"]
        said = "on" if default.get(choice) else "off"  # torch_compile: a run does not compile
        idle = (
            " (the flag does not act on the cpu)"
            if dev.type == "cpu" and choice in ("cudnn_benchmark", "tf32")
            else ""
        )
        rows += [
            {"row": f"{tag}: {choice} on", "value": b / statistics.median(on), "unit": "images/s"},
            {"row": f"{tag}: {choice} off", "value": b / statistics.median(off), "unit": "images/s"},
            {
                "row": f"{tag}: {choice} on / off step time",
                "value": statistics.median([x / y for x, y in zip(on, off, strict=True)]),
                "unit": f"x (<1: on is faster; the default here: {said}){idle}",
            },
        ]
    if "torch_compile" in extra:
        rows.append(
            {
                "row": f"{tag}: torch_compile first step (compiling)",
                "value": extra["torch_compile"],
                "unit": "s",
            }
        )
    notes = [f"{tag}: {choice} {why}" for choice, why in skipped.items()]
    return rows, notes
