"""Collapse monitor: every n steps, spectra / effective rank / RankMe / LID of a fixed held-out probe batch.

Per record: erank and RankMe of r and z (SPEC 1.2, 1.3), their covariance spectra (SPEC 1.1), the
geometric-mean MLE LID of r (SPEC 1.7), the effective rank of each weight layer's singular values
(SPEC 1.5) and every regularizer term (value, share of the loss, its own statistics). A warning is logged
when erank(r) falls below ``warn_fraction`` x its best value so far. The history is saved in checkpoints
(so a resumed run continues it) and written to ``monitor.json``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from dimcollapse import diagnostics as dg
from dimcollapse.errors import DivergedError
from dimcollapse.regularizers.gram import gram_deviation_sq
from dimcollapse.utils.atomic import atomic_write_json

log = logging.getLogger("dimcollapse.monitor")


def layer_singular_values(module: nn.Module) -> dict[str, np.ndarray]:
    """Singular values (descending) of each weight layer, conv weights read as C_out x (C_in kh kw)."""
    spectra: Any = getattr(dg, "weight_spectra", None)
    if spectra is not None:
        return {k: np.asarray(v, dtype=np.float64) for k, v in spectra(module).items()}
    getter: Any = getattr(module, "weight_layers", None)
    layers = getter() if callable(getter) else list(module.named_modules())
    out = {}
    for name, m in layers:
        w = getattr(m, "weight", None)
        if isinstance(w, Tensor) and w.ndim >= 2:
            sv = torch.linalg.svdvals(w.detach().float().reshape(w.shape[0], -1).cpu())
            out[name] = sv.double().numpy()
    return out


class CollapseMonitor(L.Callback):
    """Every ``every_n_steps`` optimizer steps: collapse metrics of the probe batch, logged and kept."""

    def __init__(
        self,
        probe_images: Tensor,
        every_n_steps: int = 50,
        warn_fraction: float = 0.5,
        lid_k: int = 20,
        weight_spectra: bool = True,
        out_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.probe = probe_images
        self.every = int(every_n_steps)
        self.warn_fraction = float(warn_fraction)
        self.lid_k = int(lid_k)
        self.weight_spectra = bool(weight_spectra)
        self.out_path = Path(out_path) if out_path is not None else None
        self.history: list[dict[str, Any]] = []
        self.best_erank = 0.0
        self.time_s = 0.0
        self.warnings = 0

    @torch.no_grad()
    def measure(self, pl_module: Any, step: int) -> dict[str, Any]:
        """One record of collapse metrics on the probe batch (eval mode, no gradient)."""
        was_training = pl_module.training
        pl_module.eval()
        try:
            r, z = pl_module.encode_eval(self.probe.to(pl_module.device))
        finally:
            pl_module.train(was_training)
        if not (bool(torch.isfinite(r).all()) and bool(torch.isfinite(z).all())):
            raise DivergedError(
                f"the monitor's probe embeddings hold NaN/Inf at step {step}: training diverged; "
                "training stopped.",
                step,
                "the probe embeddings",
            )
        r64, z64 = r.double().cpu(), z.double().cpu()
        eig_r, eig_z = dg.covariance_spectrum(r64), dg.covariance_spectrum(z64)
        k = min(self.lid_k, r64.shape[0] - 2)
        lid = dg.lid_summary(dg.lid_mle(r64.numpy(), k=k))["gmean"] if k >= 2 else float("nan")
        rec: dict[str, Any] = {
            "step": step,
            "epoch": step / max(1, pl_module.info.steps_per_epoch),
            "erank_r": dg.effective_rank(eig_r),
            "rankme_r": dg.rankme(r64),
            "erank_z": dg.effective_rank(eig_z),
            "rankme_z": dg.rankme(z64),
            "lid_r": lid,
            "spectrum_r": eig_r.tolist(),
            "spectrum_z": eig_z.tolist(),
        }
        if self.weight_spectra:
            rec["layers"] = self.layer_view(pl_module)
        rec["regularizers"] = {k: dict(v) for k, v in getattr(pl_module, "last_terms", {}).items()}
        return rec

    @torch.no_grad()
    def layer_view(self, pl_module: Any) -> dict[str, dict[str, Any]]:
        """Per weight layer of backbone and projector: erank of its singular values, sigma_max / sigma_min,
        ||G - I||_F^2 (G the smaller Gram, what SO penalises) and the regularizers that act on it."""
        acting: dict[str, list[str]] = {}
        names, regs = getattr(pl_module, "term_names", []), getattr(pl_module, "regularizers", [])
        for name, reg in zip(names, regs, strict=True):
            select = getattr(reg, "selected", None)
            if callable(select):
                for layer, _ in select(pl_module.model):
                    acting.setdefault(layer, []).append(name)
        layers: dict[str, dict[str, Any]] = {}
        for part in ("backbone", "projector"):
            module = getattr(pl_module.model, part)
            weights = {n: getattr(m, "weight", None) for n, m in module.named_modules()}
            for name, sv in layer_singular_values(module).items():
                w = weights.get(name)
                dev = float(gram_deviation_sq(w.detach().float())) if isinstance(w, Tensor) else float("nan")
                layers[f"{part}.{name}"] = {
                    "erank": dg.effective_rank(sv) if sv.size and sv.max() > 0 else 0.0,
                    "sigma_max": float(sv[0]) if sv.size else 0.0,
                    "sigma_min": float(sv[-1]) if sv.size else 0.0,
                    "orth_dev": dev,
                    "regularized_by": acting.get(f"{part}.{name}", []),
                }
        return layers

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int
    ) -> None:
        """Measure after the first step and every n steps (global_step counts finished optimizer steps)."""
        step = int(trainer.global_step)
        if step != 1 and step % self.every != 0:
            return
        self._record(trainer, pl_module, step)

    def _record(self, trainer: L.Trainer, pl_module: Any, step: int) -> None:
        if self.history and self.history[-1]["step"] == step:
            return
        if not trainer.is_global_zero:  # one process measures (eval-mode forward, no collectives)
            return
        t0 = time.perf_counter()
        rec = self.measure(pl_module, step)
        if rec["erank_r"] > self.best_erank:
            self.best_erank = rec["erank_r"]
        rec["warning"] = bool(rec["erank_r"] < self.warn_fraction * self.best_erank)
        if rec["warning"]:
            self.warnings += 1
            log.warning(
                "collapse warning at step %d: effective rank of r is %.2f, below %.2f x its best %.2f",
                step,
                rec["erank_r"],
                self.warn_fraction,
                self.best_erank,
            )
        self.history.append(rec)
        scalars = {
            f"monitor/{k}": float(rec[k]) for k in ("erank_r", "rankme_r", "erank_z", "rankme_z", "lid_r")
        }
        for name, stats in rec.get("layers", {}).items():
            scalars[f"monitor/layer_erank/{name}"] = stats["erank"]
        if trainer.logger is not None and trainer.is_global_zero:
            for lg in trainer.loggers:
                lg.log_metrics(scalars, step=step)
        self.time_s += time.perf_counter() - t0

    def summary(self) -> dict[str, Any]:
        """The history with the settings, the best erank, the number of warnings and the time spent."""
        return {
            "every_n_steps": self.every,
            "probe_size": int(self.probe.shape[0]),
            "warn_fraction": self.warn_fraction,
            "best_erank_r": self.best_erank,
            "warnings": self.warnings,
            "time_s": self.time_s,
            "history": self.history,
        }

    def write(self) -> None:
        """Write monitor.json (atomically) when an output path is set."""
        if self.out_path is not None:
            atomic_write_json(self.out_path, self.summary())

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        """Measure the final state (if the last step was not measured) and write the history."""
        if trainer.is_global_zero:
            self._record(trainer, pl_module, int(trainer.global_step))
            self.write()

    def on_exception(self, trainer: L.Trainer, pl_module: Any, exception: BaseException) -> None:
        """Keep what was measured when training fails."""
        if trainer.is_global_zero:
            self.write()

    def state_dict(self) -> dict[str, Any]:
        """History, best erank, warnings and time (saved in checkpoints for resume)."""
        return {
            "history": self.history,
            "best_erank": self.best_erank,
            "warnings": self.warnings,
            "time_s": self.time_s,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the history from a checkpoint."""
        self.history = list(state_dict.get("history", []))
        self.best_erank = float(state_dict.get("best_erank", 0.0))
        self.warnings = int(state_dict.get("warnings", 0))
        self.time_s = float(state_dict.get("time_s", 0.0))
