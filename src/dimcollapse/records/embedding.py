"""``EmbeddingRecord``: the measured facts of one embedding matrix (an analysed file or a run's r / z).

``n`` rows and ``d`` dimensions, ``metrics`` (the catalogue's scalar metrics and the numeric settings they
were measured with, e.g. ``lid_k``), the covariance ``spectrum`` when kept, and ``details`` (everything
else: where it came from, LID summaries, figure files). ``to_json`` writes the flat layout of
``analyze``'s metrics.json; a run's outputs are the same record with the output's suffix on every key
(``erank_r``, ``n_r``: :meth:`suffixed`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dimcollapse.errors import InputError
from dimcollapse.records.schema import EMBEDDING, JsonObject, JsonValue, stamp, upgrade

# value types a metric may have in JSON (bool is a detail, not a metric)
Number = int | float


def is_number(value: object) -> bool:
    """True for an int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(value: object) -> int | None:
    """``value`` as a row / dimension count, None when it is not a finite whole number."""
    if not is_number(value) or value != value or value in (float("inf"), float("-inf")):
        return None
    return int(value)  # type: ignore[call-overload]


@dataclass
class EmbeddingRecord:
    """One embedding's measured facts: n, d, scalar metrics, spectrum and the other details."""

    n: int | None
    d: int | None
    metrics: dict[str, Number] = field(default_factory=dict)
    spectrum: list[Number] | None = None
    details: JsonObject = field(default_factory=dict)
    output: str = ""  # "r" / "z" for a training run's output, "" for an analysed embedding

    def get(self, key: str) -> Number | None:
        """The value of metric ``key`` (``n`` and ``d`` included), None when not measured."""
        if key in ("n", "d"):
            return self.n if key == "n" else self.d
        return self.metrics.get(key)

    @classmethod
    def from_fields(cls, fields: Mapping[str, JsonValue], output: str = "") -> EmbeddingRecord:
        """The record of an already-upgraded flat mapping (keys without an output suffix)."""
        metrics: dict[str, Number] = {}
        details: JsonObject = {}
        for key, value in fields.items():
            if key in ("n", "d", "spectrum"):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[key] = value
            else:
                details[key] = value
        raw = fields.get("spectrum")
        spectrum: list[Number] | None = None
        if isinstance(raw, list):
            spectrum = [v for v in raw if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if len(spectrum) != len(raw):  # not a list of numbers: kept as it came, not as a spectrum
                details["spectrum"], spectrum = raw, None
        elif raw is not None:
            details["spectrum"] = raw
        return cls(_count(fields.get("n")), _count(fields.get("d")), metrics, spectrum, details, output)

    @classmethod
    def from_json(cls, raw: object, source: str = "metrics") -> EmbeddingRecord:
        """The record of an ``analyze`` metrics.json's content (any schema version this code reads)."""
        kind, fields = upgrade(raw, source)
        if kind != EMBEDDING:
            raise InputError(f"{source}: a training run's metrics, not an analysed embedding's.")
        return cls.from_fields(fields)

    def fields(self) -> JsonObject:
        """The flat fields without schema stamp or suffix: n, d, metrics, details, spectrum."""
        out: JsonObject = {}
        if self.n is not None:
            out["n"] = self.n
        if self.d is not None:
            out["d"] = self.d
        out.update(self.metrics)
        out.update(self.details)
        if self.spectrum is not None:
            out["spectrum"] = list(self.spectrum)
        return out

    def suffixed(self) -> JsonObject:
        """The fields with ``_<output>`` appended to every key (a run's layout: erank_r, n_r, ...)."""
        return {f"{k}_{self.output}" if self.output else k: v for k, v in self.fields().items()}

    def to_json(self) -> JsonObject:
        """The metrics.json content of an analysed embedding (current schema version)."""
        return stamp(EMBEDDING, self.fields())
