"""``ResultRow``: one row of a study's results table (a run, a baseline, or one run folder).

A row names its run (``run_id``, ``variant``, ``status``) and holds columns in the order they were
added: what the run was (objective, projector, regularizers, seed, data settings), its grid point (a
value as the study gave it, which may be a list or mapping), its result record's scalar fields
(accuracies, ``erank_r``, steps, ...) and the paper's number beside ours. It reads as a
``Mapping[str, JsonValue]`` (the flat layout of results.json / results.csv, identity first), and the
typed reads give a number or text, never ``Any``:

    row.number("knn_k200_top1")   # float | None (None: absent, not a number, or a bool)
    row.text("regularizers")      # "" when absent
    row.to_json()                 # the flat results.json object
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from dimcollapse.errors import InputError
from dimcollapse.records.schema import JsonValue

Scalar: TypeAlias = str | int | float | bool | None  # a result's scalar value
Row: TypeAlias = Mapping[str, JsonValue]  # any flat result row (a ResultRow, or a dict read from JSON)
IDENTITY = ("run_id", "variant", "status")
DONE, BASELINE, FAILED = "done", "baseline", "failed"


def as_number(value: object) -> float | None:
    """``value`` as a float when it is an int or float (bools are not numbers), else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def as_finite(value: object) -> float | None:
    """``as_number(value)`` when it is finite, else None."""
    v = as_number(value)
    return v if v is not None and math.isfinite(v) else None


def number(row: Mapping[str, object], key: str) -> float | None:
    """``row[key]`` as a float (None: absent, not a number, or a bool)."""
    return as_number(row.get(key))


def finite(row: Mapping[str, object], key: str) -> float | None:
    """``row[key]`` as a finite float, else None."""
    return as_finite(row.get(key))


@dataclass(eq=False)  # equality is the Mapping's: equal to any mapping of the same columns
class ResultRow(Mapping[str, JsonValue]):
    """One result row: identity plus ordered columns (see the module docstring)."""

    run_id: str
    variant: str
    status: str = DONE
    columns: dict[str, JsonValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in IDENTITY:
            self.columns.pop(key, None)

    # -- Mapping: the flat layout, identity first --------------------------------------------------
    def __getitem__(self, key: str) -> JsonValue:
        if key in IDENTITY:
            return str(getattr(self, key))
        return self.columns[key]

    def __iter__(self) -> Iterator[str]:
        yield from IDENTITY
        yield from self.columns

    def __len__(self) -> int:
        return len(IDENTITY) + len(self.columns)

    def __contains__(self, key: object) -> bool:
        return key in IDENTITY or key in self.columns

    # -- typed reads ---------------------------------------------------------------------------------
    def number(self, key: str) -> float | None:
        """The column as a float (None: absent or not a number)."""
        return number(self, key)

    def text(self, key: str) -> str:
        """The column as text ("" when absent or None)."""
        v = self.get(key)
        return "" if v is None else str(v)

    @property
    def is_done(self) -> bool:
        """A finished run."""
        return self.status == DONE

    @property
    def is_failed(self) -> bool:
        """A run that failed (status ``failed: <reason>``)."""
        return self.status.startswith(FAILED)

    # -- writes --------------------------------------------------------------------------------------
    def set(self, key: str, value: JsonValue) -> None:
        """Set column ``key`` (an existing column keeps its place); identity fields are set as text."""
        if key in IDENTITY:
            setattr(self, key, str(value))
        else:
            self.columns[key] = value

    def update(self, values: Mapping[str, JsonValue]) -> None:
        """Set every column of ``values`` (as ``dict.update``: existing columns keep their place)."""
        for k, v in values.items():
            self.set(k, v)

    def add_missing(self, values: Mapping[str, JsonValue]) -> None:
        """Add the columns of ``values`` that the row does not hold yet."""
        for k, v in values.items():
            if k not in self:
                self.set(k, v)

    def to_json(self) -> dict[str, JsonValue]:
        """The flat results.json object: run_id, variant, status, then the columns in order."""
        return dict(self)

    @classmethod
    def from_json(cls, raw: object, source: str = "results.json") -> ResultRow:
        """A row of results.json / baselines.json: a JSON object with ``run_id`` (every column kept)."""
        if not isinstance(raw, Mapping) or "run_id" not in raw:
            raise InputError(
                f"'{source}' holds a row that is not an object with a run_id; rerun `dimcollapse study` "
                "on the study file to rebuild it from the run folders."
            )
        cols: dict[str, JsonValue] = {str(k): v for k, v in raw.items()}
        run_id = str(raw["run_id"])
        return cls(run_id, str(raw.get("variant", run_id)), str(raw.get("status", DONE)), cols)
