"""The records shared by ``CollapseMonitor`` (Lightning) and ``Tracker`` (plain loops).

One record per measurement: ``step`` (and ``epoch`` when known), for every embed output o and every
monitored catalogue metric m the value ``<m>_<o>`` (m by its spec's ``record_name``: ``lid`` for
``lid_mle_gmean``; default metrics: the catalogue's ``monitored_keys()``; the
k-NN metrics (LID) only for the first output, they cost the most), the
covariance spectrum ``spectrum_<o>``, LiDAR ``lidar_<o>`` when an ``augment`` function is given,
the scale signals ``std_norm_<o>`` and ``total_var_<o>`` (``signals.py``), per-layer weight statistics
``layers``, ``warning`` and ``warning_reasons``. ``rule.py`` says when a record warns: the watched value
(default ``erank`` of the first output) or the output's scale signals fall below a fraction of their best
after a warm-up; after ``patience`` warnings in a row the recorder asks to stop (when
``stop_on_collapse``). ``summary()`` is what ``monitor.json`` holds, with its one-line ``verdict``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict

import torch
from torch import Tensor, nn

from dimcollapse.diagnostics import catalogue
from dimcollapse.diagnostics.catalogue import evaluate
from dimcollapse.diagnostics.lidar import lidar
from dimcollapse.diagnostics.summary import embedding_context
from dimcollapse.errors import ConfigError, DivergedError
from dimcollapse.records.monitor import MonitorRecord, layers_json, record_layers, record_step
from dimcollapse.records.row import as_number
from dimcollapse.records.schema import JsonObject
from dimcollapse.track.budget import TimeBudget
from dimcollapse.track.layers import layer_view
from dimcollapse.track.probe import Embed, Probe
from dimcollapse.track.rule import CollapseRule, default_warmup, watched_output
from dimcollapse.track.signals import normalized_std, total_variance
from dimcollapse.track.verdict import collapse_verdict
from dimcollapse.utils.atomic import atomic_write_json
from dimcollapse.utils.options import int_option

log = logging.getLogger("dimcollapse.monitor")

Annotate = Callable[[nn.Module, MonitorRecord], None]
Augment = Callable[[Any], Any]


class RecorderOptions(TypedDict, total=False):
    """The recorder's keyword options (see ``CollapseRecorder``), declared once: ``CollapseMonitor`` and
    ``Tracker`` take them as ``**options: Unpack[RecorderOptions]`` and pass them on."""

    layers: Sequence[str] | None
    metrics: Sequence[str] | None
    lid_k: int
    warn_fraction: float
    variance_fraction: float
    warmup_steps: int | None
    max_share: float | None
    watch: str | None
    stop_on_collapse: bool
    patience: int
    weight_spectra: bool
    augment: Augment | None
    n_views: int
    out_path: str | Path | None
    annotate: Annotate | None
    weights_of: Callable[[nn.Module], nn.Module] | None


def record_key(metric: str, output: str) -> str:
    """The record key of catalogue metric ``metric`` on embed output ``output`` (``lid_r``, ``erank_z``)."""
    return f"{catalogue.spec(metric).record_name}_{output}"


class CollapseRecorder:
    """Measures a fixed probe with ``embed`` and keeps the history (see the module docstring)."""

    def __init__(
        self,
        probe: Any,
        embed: Embed | None = None,
        *,
        layers: Sequence[str] | None = None,
        metrics: Sequence[str] | None = None,
        lid_k: int = 20,
        warn_fraction: float = 0.5,
        variance_fraction: float = 0.1,
        warmup_steps: int | None = None,
        max_share: float | None = None,
        watch: str | None = None,
        stop_on_collapse: bool = False,
        patience: int = 1,
        weight_spectra: bool = True,
        augment: Augment | None = None,
        n_views: int = 4,
        out_path: str | Path | None = None,
        annotate: Annotate | None = None,
        weights_of: Callable[[nn.Module], nn.Module] | None = None,
    ) -> None:
        """See the module docstring; ``metrics`` are catalogue keys (default: ``monitored_keys()``),
        ``layers`` names or patterns.

        ``weights_of(module)`` is the sub-module whose layers are read (default: the module itself);
        ``annotate(module, record)`` may add fields to each record; ``warn_fraction``,
        ``variance_fraction`` and ``warmup_steps`` (None: set from the cadence) as in ``rule.py``;
        ``max_share``: the share of the training time the measurements may take (``budget.py``).
        """
        metrics = catalogue.monitored_keys() if metrics is None else tuple(metrics)
        unknown = [m for m in metrics if m not in catalogue.BY_KEY]
        if unknown:
            raise ConfigError(f"unknown metric(s) {unknown}; catalogue keys: {', '.join(catalogue.BY_KEY)}.")
        patience, lid_k = int_option(patience, "patience", 1), int_option(lid_k, "lid_k", 0)
        n_views = int_option(n_views, "n_views (LiDAR views per probe sample)", 2)
        self.rule = CollapseRule(warn_fraction, variance_fraction, warmup_steps)
        self.budget = TimeBudget(max_share)
        self.probe = Probe(probe, embed)
        self.layers, self.metrics, self.lid_k = layers, tuple(metrics), int(lid_k)
        self.warn_fraction, self.watch = self.rule.warn_fraction, watch
        self.stop_on_collapse, self.patience = bool(stop_on_collapse), int(patience)
        self.weight_spectra, self.augment, self.n_views = bool(weight_spectra), augment, int(n_views)
        self.out_path = Path(out_path) if out_path is not None else None
        self.annotate, self.weights_of = annotate, weights_of
        self.history: list[MonitorRecord] = []
        self.best = -math.inf
        self.warnings, self.streak, self.time_s = 0, 0, 0.0
        self.stopped_at: int | None = None
        self.probe_dim: int | None = None

    def _embedding_metrics(self, name: str, z: Tensor, rec: MonitorRecord, with_lid: bool) -> None:
        k = min(self.lid_k, z.shape[0] - 2)
        wants_lid = with_lid and k >= 2 and any(m.startswith("lid_") for m in self.metrics)
        ctx = embedding_context(z, k if wants_lid else None, lid_max_points=None)
        keys = [m for m in self.metrics if m != "lidar" and (wants_lid or not m.startswith("lid_"))]
        values = evaluate(ctx, keys)
        for m in keys:
            rec[record_key(m, name)] = values.get(m, float("nan"))
        rec[f"std_norm_{name}"] = normalized_std(z)
        rec[f"total_var_{name}"] = total_variance(ctx.eig)
        rec[f"spectrum_{name}"] = ctx.eig.tolist()

    def _lidar(self, module: nn.Module, rec: MonitorRecord) -> None:
        assert self.augment is not None
        views: dict[str, list[Tensor]] = {}
        for _ in range(self.n_views):
            for name, z in self.probe.outputs(module, self.augment).items():
                views.setdefault(name, []).append(z)
        for name, vs in views.items():
            rec[f"lidar_{name}"] = lidar(torch.stack(vs, dim=1))

    @torch.no_grad()
    def measure(self, module: nn.Module, step: int, epoch: float | None = None) -> MonitorRecord:
        """One record of the probe's metrics (module in eval mode, no gradient), not yet kept."""
        rec: MonitorRecord = {"step": int(step)}
        if epoch is not None:
            rec["epoch"] = float(epoch)
        for i, (name, z) in enumerate(self.probe.outputs(module).items()):
            if not bool(torch.isfinite(z).all()):
                raise DivergedError(
                    f"the monitor's probe embeddings ('{name}') hold NaN/Inf at step {step}: training "
                    "diverged; training stopped.",
                    step,
                    "the probe embeddings",
                )
            self._embedding_metrics(name, z, rec, with_lid=i == 0)  # k-NN LID: first output only
        if self.augment is not None:
            self._lidar(module, rec)
        if self.weight_spectra:
            root = module if self.weights_of is None else self.weights_of(module)
            rec["layers"] = layers_json(layer_view(root, self.layers))
        if self.annotate is not None:
            self.annotate(module, rec)
        return rec

    def resolve_warmup(self, every: int, total_steps: float | None = None) -> None:
        """Set the default warm-up (``rule.default_warmup``) unless one was given."""
        if self.rule.warmup_steps is None:
            self.rule.warmup_steps = default_warmup(every, total_steps)

    def watched(self, rec: MonitorRecord) -> str:
        """The record key the collapse warning watches (default erank of the first output)."""
        if self.watch is None:
            first = next(k for k in rec if k.startswith("spectrum_"))[len("spectrum_") :]
            self.watch = record_key(self.metrics[0], first)
        if self.watch not in rec:
            keys = [k for k, v in rec.items() if isinstance(v, float)]
            raise ConfigError(f"watch='{self.watch}' is not a measured value; choose one of {keys}.")
        return self.watch

    def _probe_check(self, rec: MonitorRecord) -> None:
        """Note the watched output's dimension and warn once when the probe has N <= D rows."""
        if self.probe_dim is not None:
            return
        name = self.watched_output(rec)
        spectrum = rec.get(f"spectrum_{name}") if name else None
        if not isinstance(spectrum, list) or not spectrum:
            return
        self.probe_dim = len(spectrum)
        n = self.probe.size
        if n <= self.probe_dim:
            log.warning(
                "the monitor's probe has %d rows <= %d dimensions of '%s': erank, RankMe and the "
                "collapsed dimensions are bounded by N - 1 = %d (not collapse); give the probe more "
                "than %d rows",
                n,
                self.probe_dim,
                name,
                n - 1,
                self.probe_dim,
            )

    def watched_output(self, rec: MonitorRecord) -> str | None:
        """The embed output of the watched key (its scale signals are checked too)."""
        outputs = [k[len("spectrum_") :] for k in rec if k.startswith("spectrum_")]
        return watched_output(self.watched(rec), outputs)

    def record(
        self, module: nn.Module, step: int, epoch: float | None = None, force: bool = False
    ) -> MonitorRecord | None:
        """Measure, update bests / warnings / stop decision and keep the record (once per step; None
        when already recorded, or when the time budget has no room for it and ``force`` is False)."""
        if self.history and record_step(self.history[-1]) == step:
            return None
        if not force and not self.budget.allows():
            return None
        t0 = time.perf_counter()
        rec = self.measure(module, step, epoch)
        key = self.watched(rec)
        self._probe_check(rec)
        reasons = self.rule.check(rec, key, self.watched_output(rec))
        self.best = self.rule.best.get(key, self.best)
        rec["warning"], rec["warning_reasons"] = bool(reasons), list(reasons)
        if reasons:
            self.warnings += 1
            self.streak += 1
            log.warning("collapse warning at step %d: %s", step, "; ".join(reasons))
            if self.stop_on_collapse and self.streak >= self.patience and self.stopped_at is None:
                self.stopped_at = int(step)
        else:
            self.streak = 0
        self.history.append(rec)
        cost = time.perf_counter() - t0
        self.time_s += cost
        self.budget.charge(cost)
        return rec

    @property
    def should_stop(self) -> bool:
        """True once ``stop_on_collapse`` and ``patience`` warnings in a row were recorded."""
        return self.stopped_at is not None

    def summary(self, every: int) -> JsonObject:
        """What monitor.json holds: settings, bests past the warm-up, warnings, time, history, verdict."""
        watch = self.watch or "erank"
        out: JsonObject = {
            "every_n_steps": int(every),
            "probe_size": self.probe.size,
            "probe_dim": self.probe_dim,
            "warn_fraction": self.warn_fraction,
            "variance_fraction": self.rule.variance_fraction,
            "warmup_steps": self.rule.warmup_steps,
            "watch": watch,
            "watched_output": self.watched_output(self.history[-1]) if self.history else None,
            f"best_{watch}": self.best if math.isfinite(self.best) else 0.0,
            "baselines": {k: v for k, v in self.rule.best.items()},
            "baseline_steps": {k: v for k, v in self.rule.best_step.items()},
            "warnings": self.warnings,
            "stopped_at": self.stopped_at,
            "time_s": self.time_s,
            "max_share": self.budget.max_share,
            "time_share": self.budget.share(),
            "skipped": self.budget.skipped,
            "history": list(self.history),
        }
        out["verdict"] = collapse_verdict(out)
        return out

    def verdict(self) -> str:
        """The one-line verdict 'collapsing: yes/no (why)' of the history so far (``verdict.py``)."""
        return collapse_verdict(self.summary(0))

    def write(self, every: int) -> None:
        """Write monitor.json atomically when an output path is set."""
        if self.out_path is not None:
            atomic_write_json(self.out_path, self.summary(every))

    def state_dict(self) -> dict[str, Any]:
        """History and counters (for checkpoints)."""
        return {
            "history": self.history,
            "best": self.best,
            "warnings": self.warnings,
            "streak": self.streak,
            "time_s": self.time_s,
            "watch": self.watch,
            "stopped_at": self.stopped_at,
            "rule": self.rule.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore history and counters (older checkpoints stored ``best_erank``)."""
        self.history = list(state.get("history", []))
        self.best = float(state.get("best", state.get("best_erank", -math.inf)))
        self.warnings, self.streak = int(state.get("warnings", 0)), int(state.get("streak", 0))
        self.time_s = float(state.get("time_s", 0.0))
        self.watch = state.get("watch", self.watch)
        self.stopped_at = state.get("stopped_at")
        self.rule.load_state_dict(state.get("rule", {}))


def scalar_items(rec: MonitorRecord, prefix: str = "monitor") -> dict[str, float]:
    """The record's numbers for a logger: ``<prefix>/<key>`` and ``<prefix>/layer_erank/<layer>``."""
    out = {
        f"{prefix}/{k}": v
        for k, raw in rec.items()
        if (v := as_number(raw)) is not None and k not in ("step", "epoch")
    }
    for name, stats in record_layers(rec).items():
        erank = as_number(stats["erank"])
        if erank is None:
            raise TypeError(f"layer '{name}' of a monitor record has no numeric erank")
        out[f"{prefix}/layer_erank/{name}"] = erank
    return out


__all__ = ["CollapseRecorder", "RecorderOptions", "record_key", "scalar_items"]
