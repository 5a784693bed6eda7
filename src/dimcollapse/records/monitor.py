"""``MonitorRecord``: one measurement of the collapse monitor / tracker, as monitor.json's history holds it.

Keys: ``step`` (int) and ``epoch`` when known; per embed output o ``<metric>_<o>`` (the monitored
catalogue metrics), ``std_norm_<o>``, ``total_var_<o>``, ``spectrum_<o>`` (a list), ``lidar_<o>``;
``layers`` ({layer: {statistic: value}}), ``warning`` and ``warning_reasons``; and what an ``annotate``
hook adds (the engine's regularizer terms). A plain JSON object, so users' code and monitor.json read it
as before; the helpers below give typed reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

from dimcollapse.records.row import as_number
from dimcollapse.records.schema import JsonObject, JsonValue

MonitorRecord: TypeAlias = dict[str, JsonValue]


def record_step(rec: Mapping[str, JsonValue]) -> int:
    """The record's step (a record without a numeric ``step`` is a TypeError, as for any bad record)."""
    step = as_number(rec["step"])
    if step is None:
        raise TypeError(f"a monitor record's step must be a number, got {rec['step']!r}")
    return int(step)


def layers_json(view: Mapping[str, Mapping[str, float]]) -> JsonObject:
    """Per-layer statistics ({layer: {statistic: value}}) as the record's ``layers`` object."""
    out: JsonObject = {}
    for name, stats in view.items():
        entry: JsonObject = {k: v for k, v in stats.items()}
        out[name] = entry
    return out


def record_layers(rec: Mapping[str, JsonValue]) -> dict[str, JsonObject]:
    """The record's ``layers`` as {layer: statistics object} ({} when it holds none)."""
    layers = rec.get("layers")
    if not isinstance(layers, dict):
        return {}
    return {name: stats for name, stats in layers.items() if isinstance(stats, dict)}


def record_spectra(rec: Mapping[str, JsonValue]) -> dict[str, list[float]]:
    """{``spectrum_<o>``: eigenvalues} of the record's covariance spectra (their numbers, as floats)."""
    out: dict[str, list[float]] = {}
    for key, values in rec.items():
        if key.startswith("spectrum_") and isinstance(values, list):
            out[key] = [float(v) for v in values if isinstance(v, (int, float))]
    return out
