"""The engine's collapse monitor: the generic ``dimcollapse.track.CollapseMonitor`` with explicit pieces.

Nothing here is special to the callback: the engine passes
- ``embed``: ``(r, z)`` of the un-augmented probe images via ``SSLModule.encode_eval`` -> outputs ``r``, ``z``
  (records ``erank_r``, ``rankme_r``, ``lid_r``, ``spectrum_r`` and the same for z);
- ``weights_of`` / ``layers``: the backbone and projector layers of ``SSLModule.model`` (names
  ``backbone.conv1``, ``projector.net.0``, ...);
- ``annotate``: each regularizer's terms of the measured step (read from the step's ``outputs``) and, per
  layer, the regularizers that act on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from dimcollapse.records.monitor import MonitorRecord, record_layers
from dimcollapse.records.schema import JsonObject, JsonValue
from dimcollapse.track.monitor import CollapseMonitor as _GenericMonitor

ENGINE_LAYERS = ("backbone", "backbone.*", "projector", "projector.*")


def encode_eval_embed(module: Any, x: Tensor) -> dict[str, Tensor]:
    """{"r": representation, "z": embedding} of un-augmented uint8 images (SSLModule.encode_eval)."""
    r, z = module.encode_eval(x)
    return {"r": r, "z": z}


def engine_weights(module: Any) -> nn.Module:
    """The SSLModel (backbone + projector + objective) whose backbone/projector layers are monitored."""
    model: nn.Module = module.model
    return model


def annotate_terms(
    module: Any, rec: MonitorRecord, terms: dict[str, dict[str, Tensor]] | None = None
) -> None:
    """Add the regularizer ``terms`` of the step (floats) and, per layer, the regularizers that act on it."""
    acting: dict[str, list[JsonValue]] = {}
    for name, reg in zip(module.term_names, module.regularizers, strict=True):
        select = getattr(reg, "selected", None)  # only weight regularizers select layers
        if callable(select):
            for layer, _ in select(module.model):
                acting.setdefault(layer, []).append(name)
    for layer, stats in record_layers(rec).items():
        stats["regularized_by"] = acting.get(layer, [])
    values: JsonObject = {}
    for k, t in (terms or {}).items():
        term: JsonObject = {s: float(v) for s, v in t.items()}
        values[k] = term
    rec["regularizers"] = values


class CollapseMonitor(_GenericMonitor):
    """The generic monitor set up for ``SSLModule`` (same constructor as the engine always used)."""

    def __init__(
        self,
        probe_images: Tensor,
        every_n_steps: int = 50,
        warn_fraction: float = 0.5,
        lid_k: int = 20,
        weight_spectra: bool = True,
        out_path: str | Path | None = None,
        max_share: float | None = None,
    ) -> None:
        """Probe: uint8 images; the rest as in ``dimcollapse.track.CollapseMonitor``."""
        super().__init__(
            probe_images,
            embed=encode_eval_embed,
            layers=list(ENGINE_LAYERS),
            every_n_steps=every_n_steps,
            lid_k=lid_k,
            warn_fraction=warn_fraction,
            watch="erank_r",
            weight_spectra=weight_spectra,
            out_path=out_path,
            weights_of=engine_weights,
            annotate=self._annotate,
            max_share=max_share,
        )
        self._terms: dict[str, dict[str, Tensor]] | None = None

    def _annotate(self, module: Any, rec: MonitorRecord) -> None:
        annotate_terms(module, rec, self._terms)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        """Keep the step's regularizer terms (``outputs["terms"]``) for the record, then measure."""
        self._terms = outputs.get("terms") if isinstance(outputs, dict) else None
        super().on_train_batch_end(trainer, pl_module, outputs, batch, idx)

    @property
    def state_key(self) -> str:
        """The key checkpoints have always used for the engine's monitor."""
        return "CollapseMonitor"
