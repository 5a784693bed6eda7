"""``RunRecord``: what one training run (or an evaluated checkpoint) measured, trained and used.

- ``outputs``: an :class:`EmbeddingRecord` per output (``r``, ``z``) of the test split;
- ``accuracies``: the accuracy catalogue's keys (records/accuracy.py) -> fractions in [0, 1];
- ``training``: steps and epochs trained and planned, why it stopped, seed, training time;
- ``components``: the settings as used (objective, projector, backbone, each regularizer's effective
  coefficient: ``so=0.0001`` whether the config said nothing or the number);
- ``details``: everything else (evaluation settings, versions, monitor summary, ...).

``to_json`` writes the flat metrics.json layout every earlier version wrote (``knn_k20_top1``,
``erank_r``, ``n_r``, ``steps``, ...), stamped with the record kind and schema version; ``from_json``
reads any version through ``schema.upgrade``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from dimcollapse.errors import InputError
from dimcollapse.records.accuracy import accuracy_columns, is_accuracy
from dimcollapse.records.embedding import EmbeddingRecord, is_number
from dimcollapse.records.schema import OUTPUTS, RUN, JsonObject, JsonValue, stamp, upgrade

COMPONENTS_KEY = "components"


@dataclass
class TrainingFacts:
    """What a run trained (``training/run_record.py`` writes these keys); None: not recorded."""

    steps: int | None = None
    epochs: float | None = None
    planned_steps: int | None = None
    planned_epochs: float | None = None
    stopped_early: bool | None = None
    stop_reason: str | None = None
    seed: int | None = None
    train_time_s: float | None = None

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The metrics.json keys of these facts."""
        return tuple(f.name for f in fields(cls))

    def as_dict(self) -> JsonObject:
        """The recorded facts (None left out), in field order."""
        return {k: getattr(self, k) for k in self.keys() if getattr(self, k) is not None}


TRAINING_KEYS = frozenset(TrainingFacts.keys())


def _split_output(key: str) -> tuple[str, str] | None:
    """(metric key, output) of ``erank_r``-style keys, None for others."""
    for output in OUTPUTS:
        if key.endswith(f"_{output}") and len(key) > len(output) + 1:
            return key[: -len(output) - 1], output
    return None


@dataclass
class RunRecord:
    """One run's result record (see the module docstring for the parts)."""

    outputs: dict[str, EmbeddingRecord] = field(default_factory=dict)
    accuracies: dict[str, float] = field(default_factory=dict)
    training: TrainingFacts = field(default_factory=TrainingFacts)
    components: JsonObject = field(default_factory=dict)
    details: JsonObject = field(default_factory=dict)

    def output(self, name: str = "r") -> EmbeddingRecord | None:
        """The record of output ``name`` (r: the representation, z: the projector's output)."""
        return self.outputs.get(name)

    def accuracy_columns(self, tops: tuple[int, ...] = (1,)) -> list[tuple[str, str]]:
        """(key, label) of the recorded accuracies, in catalogue order."""
        return accuracy_columns(self.accuracies, tops, variants=True)

    @classmethod
    def from_fields(cls, flat: Mapping[str, JsonValue]) -> RunRecord:
        """The record of an already-upgraded flat mapping (a run's metrics.json layout)."""
        rec = cls()
        per_output: dict[str, JsonObject] = {}
        facts: dict[str, Any] = {}
        for key, value in flat.items():
            split = _split_output(key)
            if is_accuracy(key) and isinstance(value, (int, float)) and not isinstance(value, bool):
                rec.accuracies[key] = float(value)
            elif key in TRAINING_KEYS and value is not None:
                facts[key] = value
            elif key == COMPONENTS_KEY and isinstance(value, dict):
                rec.components = dict(value)
            elif split is not None and (is_number(value) or split[0] == "spectrum"):
                per_output.setdefault(split[1], {})[split[0]] = value
            else:
                rec.details[key] = value
        rec.training = TrainingFacts(**facts)
        rec.outputs = {o: EmbeddingRecord.from_fields(f, o) for o, f in per_output.items()}
        return rec

    @classmethod
    def from_json(cls, raw: object, source: str = "metrics") -> RunRecord:
        """The record of a run's metrics.json content (any schema version this code reads)."""
        kind, flat = upgrade(raw, source)
        if kind != RUN:
            raise InputError(f"{source}: an analysed embedding's metrics, not a training run's.")
        return cls.from_fields(flat)

    def fields(self) -> JsonObject:
        """The flat layout without the schema stamp: accuracies, outputs, training, components, details."""
        out: JsonObject = dict(self.accuracies)
        for rec in self.outputs.values():
            out.update(rec.suffixed())
        out.update(self.training.as_dict())
        if self.components:
            out[COMPONENTS_KEY] = self.components
        out.update(self.details)
        return out

    def to_json(self) -> JsonObject:
        """The metrics.json content of a run (current schema version)."""
        return stamp(RUN, self.fields())
