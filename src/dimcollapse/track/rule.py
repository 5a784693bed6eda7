"""When the monitor warns: the watched shape metric (after a warm-up) and the scale signals vs their best.

For the watched output o (default: the first embed output) a record warns when any of these holds
(``best``: the largest value recorded so far, this record included, counted from ``warmup_steps`` on for
the shape metric and from the first record for the scale signals):

- shape, from ``step >= warmup_steps`` on: the watched value (default ``erank_o``) < ``warn_fraction`` x
  its best. The random-initialisation erank is no reference: a healthy contrastive run's erank falls from
  it in its first steps while its spread grows, so its baseline starts after the warm-up
  (default ``default_warmup(every, total)``);
- direction spread: ``std_norm_o`` (std of the L2-normalised embeddings, ideal 1/sqrt(d)) <
  ``warn_fraction`` x its best;
- scale: ``total_var_o`` (the covariance trace) < ``variance_fraction`` x its best;
- any of them is not finite.

The scale signals need no warm-up: at random initialisation a deep network's outputs are at their least
spread (a healthy run spreads them out), and a run that shrinks its embeddings onto one point (an MSE
loss with nothing pushing the views apart) does so from its first steps, inside any warm-up.
"""

from __future__ import annotations

import math
from typing import Any

from dimcollapse.records.monitor import MonitorRecord, record_step
from dimcollapse.utils.options import float_option, int_option


def default_warmup(every: int, total_steps: float | None = None) -> int:
    """max(2 x every, 100 steps, 5% of the run's optimizer steps when known): the baseline's first step."""
    share = 0 if total_steps is None or not math.isfinite(total_steps) else math.ceil(0.05 * total_steps)
    return max(2 * int(every), 100, share)


def watched_output(watch: str, outputs: list[str]) -> str | None:
    """The embed output a record key belongs to (``erank_r`` -> ``r``; the longest matching suffix)."""
    matches = [o for o in outputs if watch.endswith(f"_{o}")]
    return max(matches, key=len) if matches else None


class CollapseRule:
    """The bests past the warm-up and the reasons a record warns (see the module docstring)."""

    def __init__(
        self, warn_fraction: float = 0.5, variance_fraction: float = 0.1, warmup_steps: int | None = None
    ) -> None:
        """``warmup_steps`` None: set later from the cadence (``default_warmup``)."""
        self.warn_fraction = float_option(warn_fraction, "warn_fraction", 0.0, 1.0)
        self.variance_fraction = float_option(variance_fraction, "variance_fraction", 0.0, 1.0)
        self.warmup_steps = None if warmup_steps is None else int_option(warmup_steps, "warmup_steps", 0)
        self.best: dict[str, float] = {}
        self.best_step: dict[str, int] = {}

    def limits(self, watch: str, output: str | None, step: int) -> dict[str, float]:
        """{record key: fraction of its best below which it warns} at ``step`` (shape: past the warm-up)."""
        out = {watch: self.warn_fraction} if step >= (self.warmup_steps or 0) else {}
        if output is not None:
            out.setdefault(f"std_norm_{output}", self.warn_fraction)
            out.setdefault(f"total_var_{output}", self.variance_fraction)
        return out

    def check(self, rec: MonitorRecord, watch: str, output: str | None) -> list[str]:
        """Update the bests with ``rec`` and return why it warns (empty: it does not)."""
        step = record_step(rec)
        reasons: list[str] = []
        for key, fraction in self.limits(watch, output, step).items():
            if key not in rec:
                continue
            raw = rec[key]
            if not isinstance(raw, (int, float)):
                raise TypeError(f"the monitored value {key} is not a number: {raw!r}")
            value = float(raw)
            if not math.isfinite(value):
                reasons.append(f"{key} is {value}")
                continue
            if value > self.best.get(key, -math.inf):
                self.best[key], self.best_step[key] = value, step
            best = self.best[key]
            if value < fraction * best:
                reasons.append(
                    f"{key} {value:.3g} < {fraction:g} x its best {best:.3g} (step {self.best_step[key]})"
                )
        return reasons

    def state_dict(self) -> dict[str, Any]:
        """Bests, their steps and the warm-up (kept in checkpoints)."""
        return {"best": dict(self.best), "best_step": dict(self.best_step), "warmup_steps": self.warmup_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved (an older checkpoint without it keeps the defaults)."""
        self.best = {str(k): float(v) for k, v in state.get("best", {}).items()}
        self.best_step = {str(k): int(v) for k, v in state.get("best_step", {}).items()}
        if state.get("warmup_steps") is not None:
            self.warmup_steps = int(state["warmup_steps"])


__all__ = ["CollapseRule", "default_warmup", "watched_output"]
