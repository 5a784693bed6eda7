"""The embedding pass of ``analyze --model``: inputs streamed through the model, the output the user means.

``collect(module, forward, opts, inputs, prep)`` runs ``forward`` on every batch (progress bar with an
ETA), keeps the chosen output (``--output`` or the default, pooled by ``--pool``; the penultimate
features when the model ends in a classifier head) as float64 rows, and the size and erank of every
other output (``Collected.summary``). A forward that fails on the inputs (a ViT built for 32 px fed
224 px, ``--embed`` at a head that takes features) is the user's mismatch: ``model_failure`` makes it
one InputError naming the input shape and the options to check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dimcollapse.analysis.embedding import (
    TOKEN_POOLS,
    candidate_outputs,
    choose_output,
    default_output,
    pool_rows,
    prefix_tokens,
)
from dimcollapse.analysis.head import HeadProbe
from dimcollapse.analysis.inputs import Inputs, Preprocess
from dimcollapse.analysis.model_options import ModelOptions
from dimcollapse.diagnostics import effective_rank
from dimcollapse.diagnostics.spectrum import CovarianceAccumulator, spectrum_of
from dimcollapse.errors import DimCollapseError, InputError, allocation_failure

PENULTIMATE = "penultimate"
SIDE_MAX_DIM = 4096  # other outputs wider than this are listed with their shape only


@dataclass
class Collected:
    """The analysed rows (N, D), their output name and pooling, a note, the head, every output's summary."""

    name: str
    pool: str | None
    rows: np.ndarray
    note: str | None = None
    head: dict[str, Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    inputs: int = 0  # inputs embedded (rows / inputs tokens each with a token pool)


def model_failure(e: BaseException, opts: ModelOptions, shape: tuple[int, ...] | None = None) -> InputError:
    """A forward that raised on the user's inputs as one line: what failed and what to check."""
    if isinstance(e, DimCollapseError):
        return InputError(str(e))
    first = (str(e).splitlines() or [type(e).__name__])[0][:200]
    where = f"--embed '{opts.embed}'" if opts.embed else "the model"
    seen = f" on inputs of shape {shape}" if shape else ""
    hint = (
        "; a head takes the backbone's features, not images: name the backbone"
        if opts.embed
        else "; check --image-size and --channels (the size the model was built for), or --embed"
    )
    return InputError(f"{where} failed{seen} ({type(e).__name__}: {first}){hint}.")


def _progress(total: int, show: bool) -> Any:
    if not show:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("embedding"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    bar.add_task("embed", total=total)
    return bar


def _outputs_of(out: Any, probe: HeadProbe, user_output: str | None) -> tuple[dict[str, Tensor], str | None]:
    """Every output by name, with the head's input as ``penultimate`` when the model ends in the head."""
    outs = candidate_outputs(out)
    first = next(iter(outs.values()))
    pen = probe.penultimate(first) if isinstance(out, Tensor) or user_output is None else None
    if pen is not None:
        outs = {PENULTIMATE: pen, **outs}
    return outs, (PENULTIMATE if pen is not None and user_output is None else None)


class _Side:
    """Running covariance of each other output (pooled by default; every token a row with a token
    pool, so each block's residual stream is measured at the token level), for its size and erank."""

    def __init__(self, token_pool: str | None = None, prefix: int = 1) -> None:
        self.accs: dict[str, CovarianceAccumulator] = {}
        self.shapes: dict[str, list[int]] = {}
        self.pools: dict[str, str | None] = {}
        self.token_pool, self.prefix = token_pool, prefix

    def add(self, name: str, t: Tensor) -> None:
        self.shapes.setdefault(name, list(t.shape[1:]))
        pool = None if t.ndim == 2 or t[0, 0].numel() == 1 else ("cls" if t.ndim == 3 else "gap")
        if t.ndim == 3 and self.token_pool is not None and t.shape[1] > self.prefix:
            pool = self.token_pool
        if t.ndim < 2:
            return
        rows = pool_rows(t, pool, name, self.prefix)
        if rows.shape[1] > SIDE_MAX_DIM:
            return
        self.pools[name] = pool
        self.accs.setdefault(name, CovarianceAccumulator(True, False, name=name)).update(
            rows.detach().cpu().double()
        )

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, shape in self.shapes.items():
            entry: dict[str, Any] = {"shape": shape}
            acc = self.accs.get(name)
            if acc is not None and acc.n >= 2:
                eig = spectrum_of(acc.covariance())
                entry.update(pool=self.pools[name], d=int(eig.size))
                entry["erank"] = float(effective_rank(eig)) if eig.size and eig.max() > 0 else 0.0
            out[name] = entry
        return out


def collect(
    module: nn.Module,
    forward: Callable[[nn.Module, Any], Any],
    opts: ModelOptions,
    inputs: Inputs,
    prep: Preprocess,
) -> Collected:
    """Rows of the chosen output for every input (see the module docstring)."""
    device = torch.device(opts.device)
    probe = HeadProbe(module) if opts.embed is None else None
    parts: list[Tensor] = []
    prefix = prefix_tokens(module)
    side = _Side(opts.pool if opts.pool in TOKEN_POOLS else None, prefix)
    seen = 0
    chosen: tuple[str, str | None] | None = None
    bar = _progress(inputs.n, opts.progress)
    module.eval()
    try:
        if bar is not None:
            bar.start()
        for raw in inputs.batches(opts.batch_size, opts.num_workers):
            x = prep(raw).to(device)
            with torch.no_grad():
                try:
                    out = forward(module, x)
                except (RuntimeError, ValueError, AssertionError, TypeError, IndexError) as e:
                    if allocation_failure(e) is not None:
                        raise  # out of memory: the CLI says so, with the size asked for
                    raise model_failure(e, opts, tuple(x.shape)) from None
            outs, auto = _outputs_of(out, probe or HeadProbe(nn.Identity()), opts.output)
            if chosen is None:
                chosen = _choose(outs, auto, opts)
            name, pool = chosen
            parts.append(pool_rows(outs[name], pool, name, prefix).detach().to("cpu", torch.float64))
            seen += int(x.shape[0])
            for other, t in outs.items():
                side.add(other, t)
            if bar is not None:
                bar.advance(bar.task_ids[0], int(x.shape[0]))
    finally:
        if bar is not None:
            bar.stop()
        if probe is not None:
            probe.close()
    assert chosen is not None
    got = _collected(chosen, parts, probe, side)
    got.inputs = seen
    return got


def _choose(outs: dict[str, Tensor], auto: str | None, opts: ModelOptions) -> tuple[str, str | None]:
    if opts.output is not None:
        return choose_output(outs, opts.output), opts.pool
    if auto is not None:
        return auto, opts.pool
    name, pool = default_output(outs)
    return name, opts.pool or pool


def _collected(
    chosen: tuple[str, str | None], parts: list[Tensor], probe: HeadProbe | None, side: _Side
) -> Collected:
    name, pool = chosen
    rows = torch.cat(parts).numpy()
    bad = int((~np.isfinite(rows).all(axis=1)).sum())
    if bad:
        raise InputError(
            f"the model's output '{name}' holds NaN/Inf for {bad} of {rows.shape[0]} inputs; the weights or "
            "the inputs are not finite (a diverged checkpoint?)."
        )
    head, note = None, None
    if probe is not None and probe.name is not None and name == PENULTIMATE:
        head = {"name": probe.name, "classes": probe.classes}
        note = (
            f"the model ends in a classifier head '{probe.name}' ({probe.classes} logits): analysing its "
            f"input, the {rows.shape[1]}-d penultimate features (pass --output output for the logits)"
        )
    return Collected(name, pool, rows, note, head, side.summary())


__all__ = ["PENULTIMATE", "Collected", "collect", "model_failure"]
